//! Media through the client against the simulator's CDN: upload, download with every check,
//! the CDN's faults, and a media message sent to a simulated phone.

use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncRead;
use wa_gateway::client::content::Kind;
use wa_gateway::client::media::{MediaFailure, MediaFuture, MediaSink, MediaSource};
use wa_gateway::client::media_ref::MediaRef;
use wa_gateway::media::MediaType;
use wa_gateway::sim::CdnFault;
use wa_gateway::sim::Simulator;

use crate::messaging::{account, link};

pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl MediaSource for Bytes {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn open(&self) -> MediaFuture<'_, Pin<Box<dyn AsyncRead + Send>>> {
        let data = self.0.clone();
        Box::pin(async move {
            Ok(Box::pin(std::io::Cursor::new(data)) as Pin<Box<dyn AsyncRead + Send>>)
        })
    }
}

#[derive(Default)]
pub(crate) struct Collect(pub(crate) Vec<u8>);

impl MediaSink for Collect {
    fn write<'a>(&'a mut self, chunk: &'a [u8]) -> MediaFuture<'a, ()> {
        self.0.extend_from_slice(chunk);
        Box::pin(async { Ok(()) })
    }
}

fn reference(kind: Kind, u: &wa_gateway::client::media::Uploaded) -> MediaRef {
    MediaRef {
        kind,
        media_key: Some(u.media_key),
        direct_path: Some(u.direct_path.clone()),
        url: Some(u.url.clone()),
        file_sha256: Some(u.file_sha256),
        file_enc_sha256: Some(u.file_enc_sha256),
        file_length: Some(u.file_length),
        mimetype: None,
        file_name: None,
        seconds: None,
        width: None,
        height: None,
    }
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn an_upload_comes_back_byte_for_byte_and_a_bad_copy_never_does() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let acct = account().await;
        let (client, _events, _) = link(&sim, &acct, "15550001001").await;

        // Several chunks and a tail that is no whole block.
        let data = file(200_003);
        let up = client
            .upload_media(MediaType::Document, &Bytes(data.clone()))
            .await
            .unwrap();
        assert_eq!(up.file_length, data.len() as u64);
        let stored = super::sim_cdn::message_media(&sim);
        assert_eq!(stored.len(), 1, "one upload, one stored file");

        let r = reference(Kind::Document, &up);
        let mut got = Collect::default();
        let v = client.download_media(&r, 1 << 20, &mut got).await.unwrap();
        assert_eq!(v.file_length, data.len() as u64);
        assert_eq!(got.0, data);

        // Over the cap: refused before a byte is read.
        let mut none = Collect::default();
        assert!(matches!(
            client.download_media(&r, 1000, &mut none).await,
            Err(MediaFailure::TooLarge { limit: 1000 })
        ));

        // The message's hash is not the file's: the plaintext check fails.
        let mut lying = r.clone();
        lying.file_sha256 = Some([0; 32]);
        let err = client
            .download_media(&lying, 1 << 20, &mut Collect::default())
            .await
            .unwrap_err();
        assert!(err.is_permanent(), "{err}");

        // The message declares a length the verified file does not have: not delivered.
        for declared in [data.len() as u64 - 1, data.len() as u64 + 1] {
            let mut long = r.clone();
            long.file_length = Some(declared);
            let err = client
                .download_media(&long, 1 << 20, &mut Collect::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, MediaFailure::LengthMismatch { declared: d, actual } if d == declared && actual == data.len() as u64),
                "{err}"
            );
        }

        // A corrupted copy on the CDN fails the encrypted-hash check.
        assert_eq!(sim.cdn_fault(&CdnFault::Corrupt(up.direct_path.clone())), 1);
        let err = client
            .download_media(&r, 1 << 20, &mut Collect::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                MediaFailure::Verify(wa_gateway::media::MediaError::EncHashMismatch)
            ),
            "{err}"
        );

        // An expired one is gone (a media retry's business).
        assert_eq!(sim.cdn_fault(&CdnFault::Expire(up.direct_path.clone())), 1);
        assert!(matches!(
            client
                .download_media(&r, 1 << 20, &mut Collect::default())
                .await,
            Err(MediaFailure::Gone)
        ));
    })
    .await
    .expect("in time");
}

#[tokio::test]
async fn a_refused_upload_token_is_renewed_once() {
    tokio::time::timeout(Duration::from_secs(120), async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let acct = account().await;
        let (client, _events, _) = link(&sim, &acct, "15550001002").await;
        // Cache a token, then have the CDN stop taking it.
        let data = file(1000);
        client
            .upload_media(MediaType::Image, &Bytes(data.clone()))
            .await
            .unwrap();
        sim.cdn_fault(&CdnFault::ExpireAuth);
        let up = client
            .upload_media(MediaType::Image, &Bytes(data.clone()))
            .await
            .unwrap();
        let mut got = Collect::default();
        client
            .download_media(&reference(Kind::Image, &up), 1 << 20, &mut got)
            .await
            .unwrap();
        assert_eq!(got.0, data);
        // Two refusals in a row: the one fresh token is also refused, and the upload fails.
        sim.cdn_fault(&CdnFault::RefuseUploads(2));
        let err = client
            .upload_media(MediaType::Image, &Bytes(data))
            .await
            .unwrap_err();
        assert!(
            matches!(err, MediaFailure::Cdn(ref e) if e.is_auth()),
            "{err}"
        );
    })
    .await
    .expect("in time");
}
