//! Cloud object stores (S3 and S3-compatible, Azure Blob, Google Cloud Storage), built with
//! `object_store`'s builders: for a source or restore target from the `influxdb3 serve` flags,
//! and for a repository from its URL plus a separate environment family.
//!
//! Repository credentials: every variable `INFLUXDB3_BACKUP_REPO_<NAME>` (e.g.
//! `INFLUXDB3_BACKUP_REPO_AWS_SECRET_ACCESS_KEY`, `INFLUXDB3_BACKUP_REPO_AZURE_STORAGE_ACCOUNT`,
//! `INFLUXDB3_BACKUP_REPO_GOOGLE_SERVICE_ACCOUNT`) overrides the standard `<NAME>` for the
//! repository only, so source and repository can be two accounts of one cloud; unset, the standard
//! variables apply.
//!
//! Secrets are only ever handed to the builders: they are never formatted into locations,
//! manifests, reports or error messages.

use crate::args::{CloudArgs, ObjectStoreKind};
use crate::exit::{Failure, STORE_ACCESS, USAGE};
use anyhow::Result;
use ib3_transfer::pace::{Pace, PacedStore};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::limit::LimitStore;
use object_store::{Certificate, ClientOptions, ObjectStore, RetryConfig};
use std::str::FromStr;
use std::sync::Arc;

/// Prefix of the repository's own environment family.
pub const REPO_ENV_PREFIX: &str = "INFLUXDB3_BACKUP_REPO_";
/// Prefix of the environment family of `copy --to-repo`.
pub const TO_REPO_ENV_PREFIX: &str = "INFLUXDB3_BACKUP_TO_REPO_";

/// A cloud store and a description of it that is safe to print.
pub struct CloudStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// `s3://bucket (endpoint …)`: never contains credentials.
    pub location: String,
    /// `s3`, `azure` or `google`.
    pub kind: &'static str,
}

/// The variable that sets whether S3 request bodies go unsigned (`object_store`'s).
const UNSIGNED_PAYLOAD_ENV: &str = "AWS_UNSIGNED_PAYLOAD";

/// `b`, sending request bodies unsigned when it talks to AWS itself (no endpoint given: HTTPS)
/// and neither the operator nor the URL chose otherwise (`chosen`): as the AWS CLI does for
/// uploads over HTTPS. TLS
/// protects the bytes in transit and the repository's own hashes end to end, so a SHA-256 of
/// every byte sent (about 0.8 s of CPU per GiB here) buys nothing. Another endpoint may be plain
/// HTTP, or a server that refuses unsigned bodies: it keeps signing unless told otherwise.
fn unsigned_payloads_to_aws(b: AmazonS3Builder, chosen: bool) -> AmazonS3Builder {
    let to_aws = b.get_config_value(&AmazonS3ConfigKey::Endpoint).is_none();
    if to_aws && !chosen {
        b.with_unsigned_payload(true)
    } else {
        b
    }
}

/// Build the store of a source or restore target.
pub fn source_store(
    kind: ObjectStoreKind,
    bucket: Option<&str>,
    cloud: &CloudArgs,
) -> Result<CloudStore> {
    let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
        Failure::new(
            USAGE,
            format!("--object-store {} needs --bucket", kind_name(kind)),
        )
        .hint("pass --bucket (or INFLUXDB3_BUCKET), as for `influxdb3 serve`")
    })?;
    let client = client_options(cloud)?;
    let retry = retry_config(cloud);
    let (store, location, kind): (Arc<dyn ObjectStore>, String, &'static str) = match kind {
        ObjectStoreKind::S3 => {
            // Client options first: `with_allow_http` writes into them.
            let mut b = AmazonS3Builder::from_env()
                .with_client_options(client)
                .with_retry(retry)
                .with_bucket_name(bucket)
                .with_region(&cloud.aws_default_region)
                .with_allow_http(cloud.aws_allow_http)
                .with_skip_signature(cloud.aws_skip_signature)
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            let (key, secret, token) = aws_credentials(cloud)?;
            if let Some(v) = key {
                b = b.with_access_key_id(v);
            }
            if let Some(v) = secret {
                b = b.with_secret_access_key(v);
            }
            if let Some(v) = token {
                b = b.with_token(v);
            }
            if let Some(v) = &cloud.aws_endpoint {
                b = b.with_endpoint(v);
            }
            let b = unsigned_payloads_to_aws(b, std::env::var_os(UNSIGNED_PAYLOAD_ENV).is_some());
            (
                Arc::new(b.build().map_err(|e| config_error("S3", e))?),
                describe("s3", bucket, cloud.aws_endpoint.as_deref()),
                "s3",
            )
        }
        ObjectStoreKind::Azure => {
            let mut b = azure_from_env()
                .with_client_options(client)
                .with_retry(retry)
                .with_container_name(bucket)
                .with_allow_http(cloud.azure_allow_http);
            if let Some(v) = &cloud.azure_storage_account {
                b = b.with_account(v);
            }
            if let Some(v) = &cloud.azure_storage_access_key {
                b = b.with_access_key(v);
            }
            if let Some(v) = &cloud.azure_endpoint {
                b = b.with_endpoint(v.clone());
            }
            (
                Arc::new(b.build().map_err(|e| config_error("Azure", e))?),
                describe("az", bucket, cloud.azure_endpoint.as_deref()),
                "azure",
            )
        }
        ObjectStoreKind::Google => {
            // As object_store's GCS default: the endpoint comes from the service account file
            // (https for Google; a local front in tests), so plain HTTP is not refused.
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(client.with_allow_http(true))
                .with_retry(retry);
            if let Some(v) = &cloud.google_service_account {
                b = b.with_service_account_path(v.to_string_lossy());
            }
            (
                Arc::new(
                    b.build()
                        .map_err(|e| config_error("Google Cloud Storage", e))?,
                ),
                describe("gs", bucket, None),
                "google",
            )
        }
        ObjectStoreKind::File | ObjectStoreKind::Memory => {
            return Err(anyhow::anyhow!(
                "internal error: {kind:?} is not a cloud store"
            ))
        }
    };
    let limited: Arc<dyn ObjectStore> = Arc::new(LimitStore::new(
        store,
        cloud.object_store_connection_limit.max(1),
    ));
    Ok(CloudStore {
        store: paced(limited),
        location,
        kind,
    })
}

fn kind_name(kind: ObjectStoreKind) -> &'static str {
    match kind {
        ObjectStoreKind::S3 => "s3",
        ObjectStoreKind::Azure => "azure",
        ObjectStoreKind::Google => "google",
        ObjectStoreKind::File => "file",
        ObjectStoreKind::Memory => "memory",
    }
}

fn describe(scheme: &str, bucket: &str, endpoint: Option<&str>) -> String {
    match endpoint {
        Some(endpoint) => format!("{scheme}://{bucket} (endpoint {endpoint})"),
        None => format!("{scheme}://{bucket}"),
    }
}

fn config_error(store: &str, error: object_store::Error) -> anyhow::Error {
    Failure::new(USAGE, format!("invalid {store} configuration: {error}")).into()
}

/// Key id, secret and token from the flags or, when given, `--aws-credentials-file`.
fn aws_credentials(cloud: &CloudArgs) -> Result<(Option<String>, Option<String>, Option<String>)> {
    let Some(path) = &cloud.aws_credentials_file else {
        return Ok((
            cloud.aws_access_key_id.clone(),
            cloud.aws_secret_access_key.clone(),
            cloud.aws_session_token.clone(),
        ));
    };
    #[derive(serde::Deserialize)]
    struct File {
        aws_access_key_id: String,
        aws_secret_access_key: String,
        aws_session_token: Option<String>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            USAGE,
            format!("cannot read --aws-credentials-file {}: {e}", path.display()),
        )
    })?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            USAGE,
            format!(
                "--aws-credentials-file {} is not the expected JSON: {e}",
                path.display()
            ),
        )
        .hint("{\"aws_access_key_id\": …, \"aws_secret_access_key\": …, \"aws_session_token\": …}")
    })?;
    Ok((
        Some(file.aws_access_key_id),
        Some(file.aws_secret_access_key),
        file.aws_session_token,
    ))
}

fn client_options(cloud: &CloudArgs) -> Result<ClientOptions> {
    let mut options =
        ClientOptions::new().with_allow_invalid_certificates(cloud.object_store_tls_allow_insecure);
    if let Some(timeout) = cloud.object_store_request_timeout {
        options = options.with_timeout(timeout);
    }
    if let Some(path) = &cloud.object_store_tls_ca {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::new(
                USAGE,
                format!("cannot read --object-store-tls-ca {}: {e}", path.display()),
            )
        })?;
        for cert in Certificate::from_pem_bundle(&pem).map_err(|e| {
            Failure::new(
                USAGE,
                format!("--object-store-tls-ca {}: {e}", path.display()),
            )
        })? {
            options = options.with_root_certificate(cert);
        }
    }
    Ok(options)
}

fn retry_config(cloud: &CloudArgs) -> RetryConfig {
    let mut retry = RetryConfig::default();
    if let Some(n) = cloud.object_store_max_retries {
        retry.max_retries = n;
    }
    if let Some(t) = cloud.object_store_retry_timeout {
        retry.retry_timeout = t;
    }
    retry
}

/// `MicrosoftAzureBuilder::from_env` plus the names `influxdb3 serve` uses
/// (`AZURE_STORAGE_ACCOUNT`, which object_store calls `AZURE_STORAGE_ACCOUNT_NAME`).
fn azure_from_env() -> MicrosoftAzureBuilder {
    let mut b = MicrosoftAzureBuilder::from_env();
    if let Ok(account) = std::env::var("AZURE_STORAGE_ACCOUNT") {
        b = b.with_account(account);
    }
    b
}

/// Environment overrides of the repository family, as (lowercase config key, value), for one
/// cloud (`aws_`, `azure_`, `google_`).
fn repo_env(env_prefix: &str, cloud_prefix: &str) -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(env_prefix)?.to_ascii_lowercase();
            key.starts_with(cloud_prefix).then_some((key, value))
        })
        .collect()
}

/// Build a repository store from its URL (`s3://`, `gs://`, `az://`, `abfs://`, `https://…`),
/// with credentials from the environment family `env_prefix` over the standard variables.
/// Returns the store and the URL's path (the repository's prefix in it).
pub fn repo_store_from_url(
    env_prefix: &str,
    spec: &str,
    url: &url::Url,
) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path)> {
    use object_store::ObjectStoreScheme as Scheme;
    let (scheme, path) = Scheme::parse(url).map_err(|e| {
        Failure::new(USAGE, format!("repository URL {spec:?} is not understood: {e}"))
            .hint("use a directory, file:///path, s3://bucket/prefix, gs://bucket/prefix or az://container/prefix")
    })?;
    let store: Arc<dyn ObjectStore> = match scheme {
        Scheme::AmazonS3 => {
            let mut b =
                AmazonS3Builder::from_env().with_conditional_put(S3ConditionalPut::ETagMatch);
            for (key, value) in repo_env(env_prefix, "aws_") {
                if let Ok(key) = AmazonS3ConfigKey::from_str(&key) {
                    b = b.with_config(key, value);
                }
            }
            // An `https://` URL names an S3-compatible host (its endpoint is taken from the URL
            // at build): only `s3://` is AWS itself.
            let chosen = url.scheme() != "s3"
                || [
                    UNSIGNED_PAYLOAD_ENV.to_string(),
                    format!("{env_prefix}{UNSIGNED_PAYLOAD_ENV}"),
                ]
                .iter()
                .any(|name| std::env::var_os(name).is_some());
            Arc::new(
                unsigned_payloads_to_aws(b, chosen)
                    .with_url(spec)
                    .build()
                    .map_err(|e| config_error("S3 repository", e))?,
            )
        }
        Scheme::MicrosoftAzure => {
            let mut b = azure_from_env();
            if let Ok(account) = std::env::var(format!("{env_prefix}AZURE_STORAGE_ACCOUNT")) {
                b = b.with_account(account);
            }
            for (key, value) in repo_env(env_prefix, "azure_") {
                if let Ok(key) = AzureConfigKey::from_str(&key) {
                    b = b.with_config(key, value);
                }
            }
            Arc::new(
                b.with_url(spec)
                    .build()
                    .map_err(|e| config_error("Azure repository", e))?,
            )
        }
        Scheme::GoogleCloudStorage => {
            let mut b = GoogleCloudStorageBuilder::from_env();
            for (key, value) in repo_env(env_prefix, "google_") {
                if let Ok(key) = GoogleConfigKey::from_str(&key) {
                    b = b.with_config(key, value);
                }
            }
            Arc::new(
                b.with_url(spec)
                    .build()
                    .map_err(|e| config_error("Google Cloud Storage repository", e))?,
            )
        }
        _ => {
            return Err(Failure::new(
                USAGE,
                format!("repository URL scheme of {spec:?} is not supported"),
            )
            .hint("use a directory, file:///path, s3://, gs:// or az://")
            .into())
        }
    };
    Ok((paced(store), path))
}

/// The caps on this run's uploads and downloads (`--limit-upload`, `--limit-download`), each
/// shared by every cloud store it opens.
static UPLOAD_PACE: std::sync::OnceLock<Arc<Pace>> = std::sync::OnceLock::new();
static DOWNLOAD_PACE: std::sync::OnceLock<Arc<Pace>> = std::sync::OnceLock::new();

/// Pace the uploads to and the reads from every cloud store this process opens from now on: at
/// most `uploads` and `downloads` bytes per second among them all, where given. Set once, before
/// the stores are opened.
pub fn limit_bandwidth(uploads: Option<u64>, downloads: Option<u64>) {
    for (pace, rate) in [(&UPLOAD_PACE, uploads), (&DOWNLOAD_PACE, downloads)] {
        if let Some(rate) = rate {
            let _ = pace.set(Arc::new(Pace::new(rate)));
        }
    }
}

/// `store` with its uploads and reads paced where the run has caps.
fn paced(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    let (uploads, downloads) = (UPLOAD_PACE.get().cloned(), DOWNLOAD_PACE.get().cloned());
    if uploads.is_none() && downloads.is_none() {
        return store;
    }
    Arc::new(PacedStore::new(store, uploads, downloads))
}

/// Check that a store answers before using it, turning the usual failures into messages that
/// name the store and the fix: missing bucket, refused credentials, unreachable endpoint.
pub async fn preflight(store: &dyn ObjectStore, location: &str, role: &str) -> Result<()> {
    let Err(error) = store.list_with_delimiter(None).await else {
        return Ok(());
    };
    let (what, hint) = match classify(&error) {
        StoreFailure::Unreachable => (
            "it could not be reached",
            "check the endpoint, the network, and TLS settings",
        ),
        StoreFailure::Missing => (
            "the bucket or container does not exist",
            "create it, or check --bucket / the repository URL",
        ),
        StoreFailure::Refused => ("access was refused", "check the credentials (access key and secret, account key, service account) and their permissions"),
        StoreFailure::NoCredentials => (
            "no credentials were given, and no cloud instance's metadata service offered any",
            "give the store's credentials (S3: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; \
             Azure: AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_ACCESS_KEY; GCS: \
             GOOGLE_SERVICE_ACCOUNT; a repository also reads them with the prefix \
             INFLUXDB3_BACKUP_REPO_, a copy's target with INFLUXDB3_BACKUP_TO_REPO_), or run \
             where an instance role provides them",
        ),
    };
    Err(Failure::new(
        STORE_ACCESS,
        format!("{role} {location}: {what}: {}", redact(&error.to_string())),
    )
    .hint(hint)
    .into())
}

/// Why a store did not answer a listing.
#[derive(Debug, PartialEq, Eq)]
enum StoreFailure {
    Unreachable,
    Missing,
    Refused,
    /// Given no credentials, the client asked a cloud instance's metadata service for them.
    NoCredentials,
}

/// Where `object_store` asks for an instance's credentials when none were given (AWS and Azure
/// at the link-local address, Google by name). Off a cloud instance the request times out or is
/// refused, which said "could not be reached" of a store that was never asked.
const METADATA_SERVICES: [&str; 2] = ["169.254.169.254", "metadata.google.internal"];

/// Sort a failed listing by its cause. The connection is judged from the error's type, not its
/// text: the text carries a bucket name and a duration (`in 253.401µs`), so a bare number such
/// as `401` in it proves nothing. Status codes are only taken with their reason phrase.
fn classify(error: &object_store::Error) -> StoreFailure {
    let text = error.to_string();
    if METADATA_SERVICES.iter().any(|m| text.contains(m)) {
        return StoreFailure::NoCredentials;
    }
    if never_answered(error) {
        return StoreFailure::Unreachable;
    }
    let says = |markers: &[&str]| markers.iter().any(|m| text.contains(m));
    if matches!(error, object_store::Error::NotFound { .. })
        || says(&[
            "NoSuchBucket",
            "ContainerNotFound",
            "404 Not Found",
            "bucket does not exist",
        ])
    {
        StoreFailure::Missing
    } else if matches!(
        error,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) || says(&[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "AuthenticationFailed",
        "403 Forbidden",
        "401 Unauthorized",
    ]) {
        StoreFailure::Refused
    } else {
        StoreFailure::Unreachable
    }
}

/// Whether the request failed before any server answered: a refused or timed-out connection.
fn never_answered(error: &object_store::Error) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            if matches!(http.kind(), HttpErrorKind::Connect | HttpErrorKind::Timeout) {
                return true;
            }
        }
        cause = e.source();
    }
    false
}

/// Keep object_store error text, but never a query string (which could carry a SAS token).
fn redact(text: &str) -> String {
    text.split_whitespace()
        .map(|word| match word.split_once('?') {
            Some((before, _)) if word.contains("://") => format!("{before}?…"),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::client::{HttpError, HttpErrorKind};

    /// Request bodies go unsigned to AWS itself only, and only where nothing chose otherwise.
    #[test]
    fn bodies_go_unsigned_only_to_aws_itself_unless_chosen() {
        let unsigned = |b: AmazonS3Builder| b.get_config_value(&AmazonS3ConfigKey::UnsignedPayload);
        let aws = AmazonS3Builder::new().with_bucket_name("b");
        let to_aws = unsigned_payloads_to_aws(aws.clone(), false);
        assert_eq!(unsigned(to_aws).as_deref(), Some("true"));
        assert_eq!(
            unsigned(unsigned_payloads_to_aws(aws, true)).as_deref(),
            Some("false")
        );
        let local = AmazonS3Builder::new().with_endpoint("http://127.0.0.1:8333");
        let to_local = unsigned_payloads_to_aws(local, false);
        assert_eq!(unsigned(to_local).as_deref(), Some("false"));
    }

    /// An error shaped like object_store's after a request: the retry layer's text around an
    /// HTTP error of the given kind.
    fn failed_request(kind: HttpErrorKind, text: &str) -> object_store::Error {
        failed_request_to("http://127.0.0.1:9/ib3-err-5316261d", kind, text)
    }

    /// [`failed_request`] of a GET of `url`.
    fn failed_request_to(url: &str, kind: HttpErrorKind, text: &str) -> object_store::Error {
        #[derive(Debug, thiserror::Error)]
        #[error("Error performing GET {url} in 253.401µs - {text}")]
        struct Request {
            url: String,
            text: String,
            #[source]
            source: HttpError,
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Request {
                url: url.into(),
                text: text.into(),
                source: HttpError::new(kind, io),
            }),
        }
    }

    #[test]
    fn a_refused_connection_is_unreachable_whatever_numbers_its_text_holds() {
        let error = failed_request(HttpErrorKind::Connect, "HTTP error: error sending request");
        assert!(
            error.to_string().contains("401"),
            "the test needs a 401 in the text"
        );
        assert_eq!(classify(&error), StoreFailure::Unreachable);
        let error = failed_request(HttpErrorKind::Timeout, "HTTP error: 404 in a timeout");
        assert_eq!(classify(&error), StoreFailure::Unreachable);
    }

    #[test]
    fn statuses_count_only_with_their_reason_phrase() {
        let answered = |text: &str| failed_request(HttpErrorKind::Unknown, text);
        let forbidden = answered("Server returned non-2xx status code: 403 Forbidden: ");
        assert_eq!(classify(&forbidden), StoreFailure::Refused);
        let missing = answered("Server returned error response: <Code>NoSuchBucket</Code>");
        assert_eq!(classify(&missing), StoreFailure::Missing);
        let other = answered("Server returned non-2xx status code: 500 Internal Server Error: ");
        assert_eq!(classify(&other), StoreFailure::Unreachable);
    }

    /// No credentials given: the request that failed went to the instance metadata service, which
    /// a laptop does not answer (a timeout) and a sandbox may refuse (403) — neither is the store.
    #[test]
    fn a_failed_metadata_request_means_no_credentials() {
        let aws = "http://169.254.169.254/latest/api/token";
        let timed_out = failed_request_to(aws, HttpErrorKind::Timeout, "HTTP error: timed out");
        assert_eq!(classify(&timed_out), StoreFailure::NoCredentials);
        let refused = failed_request_to(aws, HttpErrorKind::Unknown, "403 Forbidden: denied");
        assert_eq!(classify(&refused), StoreFailure::NoCredentials);
        let google = "http://metadata.google.internal/computeMetadata/v1/instance";
        let google = failed_request_to(google, HttpErrorKind::Connect, "HTTP error: dns error");
        assert_eq!(classify(&google), StoreFailure::NoCredentials);
    }
}
