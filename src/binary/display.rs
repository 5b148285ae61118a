//! Compact XML-like rendering of nodes for logs. Binary content is shown as its length only and
//! long strings are cut, so keys, ciphertexts and message bodies never reach a log in full.

use std::fmt;

use super::node::{Content, Node, Value};

/// Longest string printed whole.
const MAX_SHOWN: usize = 48;

fn write_value(f: &mut fmt::Formatter<'_>, v: &Value) -> fmt::Result {
    let s = v.as_str();
    if s.chars().count() <= MAX_SHOWN {
        write!(f, "{s}")
    } else {
        let cut: String = s.chars().take(MAX_SHOWN).collect();
        write!(f, "{cut}…[{} chars]", s.chars().count())
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{}", self.tag)?;
        for (k, v) in &self.attrs {
            write!(f, " {k}=\"")?;
            write_value(f, v)?;
            f.write_str("\"")?;
        }
        match &self.content {
            Content::None => f.write_str("/>"),
            Content::Bytes(b) => write!(f, ">[{} bytes]</{}>", b.len(), self.tag),
            Content::Text(v) => {
                f.write_str(">")?;
                write_value(f, v)?;
                write!(f, "</{}>", self.tag)
            }
            Content::Children(c) => {
                f.write_str(">")?;
                for n in c {
                    write!(f, "{n}")?;
                }
                write!(f, "</{}>", self.tag)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::binary::{Jid, Node, Server};

    #[test]
    fn hides_bytes_and_cuts_long_strings() {
        let n = Node::new("iq")
            .attr("to", Jid::server_jid())
            .attr("id", "1.2-3")
            .children(vec![
                Node::new("enc").bytes(vec![0x42; 300]),
                Node::new("t").text("x".repeat(100)),
                Node::new("jid").attr("jid", Jid::with_device("1555", 3, Server::User)),
            ]);
        let s = n.to_string();
        assert!(s.starts_with("<iq to=\"@s.whatsapp.net\" id=\"1.2-3\"><enc>[300 bytes]</enc>"));
        assert!(s.contains("…[100 chars]"));
        assert!(s.contains("<jid jid=\"1555:3@s.whatsapp.net\"/>"));
        assert!(!s.contains("BBBB"));
    }
}
