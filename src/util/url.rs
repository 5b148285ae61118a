//! URLs as they may be shown: without the parts where credentials ride.

/// `url` without userinfo, query or fragment; a URL that does not parse is shown as nothing.
pub fn without_credentials(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}
