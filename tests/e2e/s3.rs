//! A real S3-compatible server for the tests: `s3s-fs` served over HTTP
//! (or HTTPS, with a CA made for the test) on 127.0.0.1 (a random port),
//! checking SigV4 signatures. It runs on its own
//! thread and runtime, so it can be stopped and started again on the same
//! port while node processes keep running, and it counts the requests it
//! receives per key.
//!
//! `s3s-fs` checks `If-None-Match` / `If-Match` on writes, but not
//! atomically: two racing conditional writers could both pass the check.
//! And it keeps an object's checksum beside its file, so a read racing a
//! write can pair the old bytes with the new checksum. AWS S3 does both
//! atomically; so that the race tests exercise the client against those
//! semantics, this server runs writes one at a time and never during a
//! read's lookup (the one thing it adds to `s3s-fs`).

use dashmap::DashMap;
use hyper_util::rt::TokioIo;
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result};
use s3s_fs::FileSystem;
use sluice::store::S3Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub const ACCESS_KEY: &str = "sluice-test-access";
pub const SECRET_KEY: &str = "sluice-test-secret-key";
pub const BUCKET: &str = "sluice-test";
const REGION: &str = "us-east-1";

/// Requests received, by `METHOD key`.
#[derive(Default)]
pub struct Requests(DashMap<String, u64>);

impl Requests {
    fn record(&self, method: &str, key: &str) {
        *self.0.entry(format!("{method} {key}")).or_default() += 1;
    }

    /// How many `method` requests named a key containing `part`.
    pub fn count(&self, method: &str, part: &str) -> u64 {
        self.0
            .iter()
            .filter(|e| {
                e.key()
                    .strip_prefix(method)
                    .and_then(|k| k.strip_prefix(' '))
                    .is_some_and(|k| k.contains(part))
            })
            .map(|e| *e.value())
            .sum()
    }
}

/// `s3s-fs` with request counting and atomic writes (or, to stand in for
/// servers without them, no conditional writes at all).
struct Recording {
    fs: FileSystem,
    requests: Arc<Requests>,
    /// Writes hold it exclusively, reads shared while they open an object.
    atomic: tokio::sync::RwLock<()>,
    ignore_conditions: bool,
}

#[async_trait::async_trait]
impl S3 for Recording {
    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.requests.record("GET", &req.input.key);
        let _read = self.atomic.read().await;
        self.fs.get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.requests.record("HEAD", &req.input.key);
        let _read = self.atomic.read().await;
        self.fs.head_object(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        self.requests.record("PUT", &req.input.key);
        let mut req = req;
        if self.ignore_conditions {
            req.input.if_match = None;
            req.input.if_none_match = None;
        }
        let _write = self.atomic.write().await;
        self.fs.put_object(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.requests.record("DELETE", &req.input.key);
        let _write = self.atomic.write().await;
        self.fs.delete_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        self.requests
            .record("LIST", req.input.prefix.as_deref().unwrap_or(""));
        self.fs.list_objects_v2(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        self.requests.record("MULTIPART", &req.input.key);
        self.fs.create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.requests.record("PART", &req.input.key);
        self.fs.upload_part(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.requests.record("COMPLETE", &req.input.key);
        let _write = self.atomic.write().await;
        self.fs.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.requests.record("ABORT", &req.input.key);
        self.fs.abort_multipart_upload(req).await
    }
}

/// A running (or stopped) S3-compatible server.
pub struct S3Server {
    pub addr: SocketAddr,
    pub requests: Arc<Requests>,
    ignore_conditions: bool,
    /// Set when it serves HTTPS, with a certificate from its own CA.
    tls: Option<Tls>,
    root: PathBuf,
    _dir: tempfile::TempDir,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

/// A private CA (its certificate in `ca.pem` beside the data) and the
/// server certificate it signed for 127.0.0.1.
struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_file: PathBuf,
}

impl Tls {
    fn new(dir: &std::path::Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use tokio_rustls::rustls;
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Sluice test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server parameters")
            .signed_by(&key, &issuer)
            .expect("server certificate");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("ca.pem");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server TLS configuration");
        Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_file,
        }
    }
}

impl S3Server {
    /// Start a server with an empty bucket.
    pub fn start() -> Self {
        Self::start_with(false, false)
    }

    /// Start a server that ignores `If-None-Match` / `If-Match` on writes,
    /// like some S3-compatible stores do.
    pub fn start_ignoring_conditions() -> Self {
        Self::start_with(true, false)
    }

    /// Start a server that speaks HTTPS only, with a certificate signed by
    /// a CA of its own ([`S3Server::ca_file`]).
    pub fn start_tls() -> Self {
        Self::start_with(false, true)
    }

    fn start_with(ignore_conditions: bool, tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).expect("bucket dir");
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        let addr = probe.local_addr().expect("addr");
        drop(probe);
        let server = Self {
            addr,
            requests: Arc::default(),
            ignore_conditions,
            tls: tls.then(|| Tls::new(dir.path())),
            root,
            _dir: dir,
            runtime: Mutex::new(None),
        };
        server.resume();
        server
    }

    /// Stop serving: the port closes and open connections drop.
    pub fn stop(&self) {
        if let Some(runtime) = self.runtime.lock().expect("lock").take() {
            runtime.shutdown_background();
        }
    }

    /// Serve again on the same port, with the same data.
    pub fn resume(&self) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let service = {
            let fs = FileSystem::new(&self.root).expect("s3s-fs");
            let mut builder = s3s::service::S3ServiceBuilder::new(Recording {
                fs,
                requests: self.requests.clone(),
                atomic: tokio::sync::RwLock::new(()),
                ignore_conditions: self.ignore_conditions,
            });
            builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
            builder.build()
        };
        // The old listener may take a moment to release the port.
        let listener = (0..100)
            .find_map(|_| {
                std::net::TcpListener::bind(self.addr)
                    .inspect_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                    .ok()
            })
            .unwrap_or_else(|| panic!("cannot bind {} again", self.addr));
        listener.set_nonblocking(true).expect("nonblocking");
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener).expect("listener")
        };
        let acceptor = self.tls.as_ref().map(|tls| tls.acceptor.clone());
        runtime.spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                // Without it, small responses wait out delayed ACKs (~40 ms).
                let _ = socket.set_nodelay(true);
                let service = service.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match acceptor {
                        Some(acceptor) => match acceptor.accept(socket).await {
                            Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                            // A client that does not trust the CA hangs up.
                            Err(_) => return,
                        },
                        None => http.serve_connection(TokioIo::new(socket), service).await,
                    };
                });
            }
        });
        *self.runtime.lock().expect("lock") = Some(runtime);
    }

    pub fn endpoint(&self) -> String {
        match self.tls {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The PEM file of the CA that signed an HTTPS server's certificate.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|tls| tls.ca_file.as_path())
    }

    /// The environment a `sluice` process needs to use this server.
    /// (An HTTPS server's CA goes in `SSL_CERT_FILE`.)
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", REGION.into()),
        ];
        if let Some(ca) = self.ca_file() {
            env.push(("SSL_CERT_FILE", ca.display().to_string()));
        }
        env
    }

    /// `--store` for keys under `prefix`.
    pub fn location(&self, prefix: &str) -> String {
        format!("s3://{BUCKET}/{prefix}")
    }

    /// An in-process client of this server, keys under `prefix`.
    pub async fn store(&self, prefix: &str) -> S3Store {
        let config = aws_config::defaults(aws_config::BehaviorVersion::v2026_01_12())
            .endpoint_url(self.endpoint())
            .region(aws_sdk_s3::config::Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "tests",
            ))
            .load()
            .await;
        let store = S3Store::from_config(&config, BUCKET, prefix).expect("configure the S3 client");
        store.check().await.expect("connect to the test S3 server");
        store
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
