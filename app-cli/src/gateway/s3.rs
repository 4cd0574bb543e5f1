//! The S3 operations the gateway answers (the `s3s::S3` trait): ListBuckets,
//! HeadBucket, ListObjectsV2, HeadObject and GetObject. Every other operation
//! keeps s3s's default answer, `NotImplemented`: datasets are immutable.
//!
//! Blocking work (the chain's RPC, the nodes' QUIC reads through the read
//! layer) runs on tokio's blocking threads, at most `max_requests` at once. A
//! GetObject body streams from its read as chunks are verified, through a
//! channel of two chunks, so a large object is never held whole.
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anchor_lang::prelude::Pubkey;
use bytes::Bytes;
use cairn_core::manifest::FileEntry;
use cairn_core::DatasetId;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use s3s::dto::{
    Bucket, CommonPrefix, ETag, GetObjectInput, GetObjectOutput, HeadBucketInput, HeadBucketOutput,
    HeadObjectInput, HeadObjectOutput, ListBucketsInput, ListBucketsOutput, ListObjectsV2Input,
    ListObjectsV2Output, Object, StreamingBlob, Timestamp,
};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use solana_commitment_config::CommitmentConfig;
use storage_market::constants::INDEX_GROUP;
use storage_market::state::Deal;
use tokio::sync::{mpsc, Semaphore};

use super::config::valid_alias;
use super::metrics::Metrics;
use crate::context::Ctx;
use crate::dataset::reader::DatasetReader;
use crate::dataset::transport::Connector;
use crate::error::CliError;
use crate::output::Progress;

/// Most keys a ListObjectsV2 page holds (S3's own limit).
pub const MAX_KEYS: usize = 1000;

/// Chunks of a GetObject body waiting to be sent (each up to
/// `reader::CHUNK_BYTES`).
const BODY_CHUNKS_QUEUED: usize = 2;

/// Everything the operations share.
pub struct Shared {
    pub ctx: &'static Ctx,
    pub connector: &'static dyn Connector,
    pub aliases: BTreeMap<String, DatasetId>,
    /// The dataset key file private datasets are opened with.
    pub key_file: PathBuf,
    /// Whose datasets ListBuckets lists (the `--keypair` client), if any.
    pub lister: Option<Pubkey>,
    pub permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    datasets: Mutex<HashMap<DatasetId, Arc<Opened>>>,
    /// Block time of each epoch's first block, as looked up.
    epoch_times: Mutex<HashMap<u64, SystemTime>>,
    progress: Progress,
}

/// An opened dataset and when it was uploaded.
struct Opened {
    reader: DatasetReader<'static>,
    modified: Option<SystemTime>,
}

#[derive(Clone)]
pub struct Gateway(pub Arc<Shared>);

impl Shared {
    pub fn new(
        ctx: &'static Ctx,
        connector: &'static dyn Connector,
        aliases: BTreeMap<String, DatasetId>,
        key_file: PathBuf,
        lister: Option<Pubkey>,
        max_requests: usize,
        metrics: Arc<Metrics>,
    ) -> Self {
        Shared {
            ctx,
            connector,
            aliases,
            key_file,
            lister,
            permits: Arc::new(Semaphore::new(max_requests.max(1))),
            metrics,
            datasets: Mutex::new(HashMap::new()),
            epoch_times: Mutex::new(HashMap::new()),
            progress: Progress::hidden(),
        }
    }

    /// The dataset a bucket name stands for: an alias, or a dataset id.
    fn dataset_of(&self, bucket: &str) -> S3Result<DatasetId> {
        if let Some(id) = self.aliases.get(bucket) {
            return Ok(*id);
        }
        bucket.parse().map_err(|_| {
            s3_error!(
                NoSuchBucket,
                "{bucket:?} is neither a dataset id (64 hex characters) nor an alias of this gateway"
            )
        })
    }

    /// Dataset `id`, opened once and kept (datasets are immutable).
    fn open(&self, id: DatasetId) -> Result<Arc<Opened>, CliError> {
        if let Some(o) = self.datasets.lock().expect("datasets lock").get(&id) {
            return Ok(o.clone());
        }
        let reader = DatasetReader::open(
            self.ctx,
            self.connector,
            &id,
            &self.key_file,
            &self.progress,
        )?;
        let modified = reader.proposed_epoch().and_then(|e| self.epoch_time(e));
        let opened = Arc::new(Opened { reader, modified });
        Ok(self
            .datasets
            .lock()
            .expect("datasets lock")
            .entry(id)
            .or_insert(opened)
            .clone())
    }

    /// When `epoch` began: the block time of its first block. A dataset's
    /// deals are filed once, so the epoch they were proposed in dates it.
    fn epoch_time(&self, epoch: u64) -> Option<SystemTime> {
        if let Some(t) = self.epoch_times.lock().expect("times lock").get(&epoch) {
            return Some(*t);
        }
        let lookup = || -> Option<SystemTime> {
            let market = self.ctx.market().ok()?;
            let slot = epoch.checked_mul(market.account.params.epoch_slots)?;
            // The genesis block (slot 0) has no recorded time; neither has a
            // block pruned from the node's ledger. The first of the epoch's
            // blocks that has one counts. Confirmed, not finalized: the
            // client's `getBlocks` asks for finalized blocks unless told, and
            // the root can lag the dataset's epoch by more than an epoch.
            let last = slot.checked_add(market.account.params.epoch_slots - 1)?;
            let blocks = self
                .ctx
                .rpc
                .get_blocks_with_commitment(slot, Some(last), CommitmentConfig::confirmed())
                .ok()?;
            let secs = blocks
                .into_iter()
                .take(4)
                .find_map(|b| self.ctx.rpc.get_block_time(b).ok())?;
            Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
        };
        // A failed look-up is tried again next time.
        let t = lookup()?;
        self.epoch_times
            .lock()
            .expect("times lock")
            .insert(epoch, t);
        Some(t)
    }

    /// The lister's datasets (those with an index group filed), each with
    /// the earliest epoch its deals were proposed in.
    fn own_datasets(&self) -> Result<BTreeMap<DatasetId, u64>, CliError> {
        let Some(client) = self.lister else {
            return Ok(BTreeMap::new());
        };
        let deals = self
            .ctx
            .program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_CLIENT, client.as_ref())])?;
        let mut found: BTreeMap<DatasetId, (u64, bool)> = BTreeMap::new();
        for (_, d) in deals {
            let e = found
                .entry(DatasetId(d.dataset_id))
                .or_insert((d.proposed_epoch, false));
            e.0 = e.0.min(d.proposed_epoch);
            e.1 |= d.group == INDEX_GROUP;
        }
        Ok(found
            .into_iter()
            .filter(|(_, (_, indexed))| *indexed)
            .map(|(id, (epoch, _))| (id, epoch))
            .collect())
    }
}

impl Gateway {
    /// Runs `f` on a blocking thread, within the request limit.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> S3Result<T> + Send + 'static,
    ) -> S3Result<T> {
        let permit = self.0.permits.clone().acquire_owned().await;
        let shared = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&shared)
        })
        .await
        .map_err(|e| s3_error!(InternalError, "the request's task failed: {e}"))?
    }

    /// Bucket `bucket`'s dataset, opened.
    async fn bucket(&self, bucket: String) -> S3Result<Arc<Opened>> {
        self.blocking(move |s| {
            let id = s.dataset_of(&bucket)?;
            s.open(id).map_err(|e| to_s3(&bucket, e))
        })
        .await
    }
}

/// A read-layer failure as S3 answers it.
fn to_s3(bucket: &str, e: CliError) -> S3Error {
    match e {
        CliError::UnknownDataset { .. } => {
            s3_error!(NoSuchBucket, "bucket {bucket}: {e}")
        }
        // A private dataset this gateway has no (or another) key for.
        CliError::DatasetKeyRequired { .. } | CliError::WrongDatasetKey { .. } => {
            s3_error!(AccessDenied, "bucket {bucket}: {e}")
        }
        CliError::Unreachable { .. } | CliError::Rpc { .. } | CliError::Refused(_) => {
            s3_error!(ServiceUnavailable, "bucket {bucket}: {e}")
        }
        _ => s3_error!(InternalError, "bucket {bucket}: {e}"),
    }
}

/// Quoted BLAKE3 hex: a file's content hash, the same for the same bytes.
fn etag(entry: &FileEntry) -> ETag {
    ETag::Strong(cairn_core::hash::to_hex(&entry.blake3))
}

fn file<'a>(opened: &'a Opened, bucket: &str, key: &str) -> S3Result<&'a FileEntry> {
    opened
        .reader
        .manifest()
        .file(key)
        .ok_or_else(|| s3_error!(NoSuchKey, "bucket {bucket} has no key {key:?}"))
}

/// What `encoding-type=url` escapes: all but unreserved characters and `/`.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// One ListObjectsV2 page: keys (after `prefix`, past `after`) in byte
/// order, those with `delimiter` after the prefix rolled up into common
/// prefixes, at most `max` entries. Returns the keys, the common prefixes,
/// and the token to continue after (if truncated).
pub fn list_page<'a>(
    keys: impl Iterator<Item = &'a str>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> (Vec<&'a str>, Vec<String>, Option<String>) {
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut contents = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    for key in keys.filter(|k| k.starts_with(prefix)) {
        if let Some(after) = after {
            // Past the token, and not inside a common prefix already listed.
            if key <= after
                || delimiter.is_some_and(|d| after.ends_with(d) && key.starts_with(after))
            {
                continue;
            }
        }
        let rolled = delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        if let Some(p) = &rolled {
            if prefixes.last() == Some(p) {
                continue;
            }
        }
        if contents.len() + prefixes.len() == max {
            return (contents, prefixes, last);
        }
        match rolled {
            Some(p) => {
                last = Some(p.clone());
                prefixes.push(p);
            }
            None => {
                last = Some(key.to_string());
                contents.push(key);
            }
        }
    }
    (contents, prefixes, None)
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let buckets = self
            .blocking(|s| {
                let own = s.own_datasets().map_err(|e| to_s3("(list)", e))?;
                let mut names: BTreeMap<String, Option<u64>> = own
                    .iter()
                    .map(|(id, e)| (id.to_string(), Some(*e)))
                    .collect();
                for (alias, id) in &s.aliases {
                    names.insert(alias.clone(), own.get(id).copied());
                }
                Ok(names
                    .into_iter()
                    .map(|(name, epoch)| Bucket {
                        name: Some(name),
                        creation_date: epoch.and_then(|e| s.epoch_time(e)).map(Timestamp::from),
                        ..Default::default()
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket(req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let opened = self.bucket(input.bucket.clone()).await?;
        let max = match input.max_keys {
            Some(n) if n < 0 => return Err(s3_error!(InvalidArgument, "max-keys is negative")),
            Some(n) => (n as usize).min(MAX_KEYS),
            None => MAX_KEYS,
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let after = input
            .continuation_token
            .as_deref()
            .or(input.start_after.as_deref());
        let manifest = opened.reader.manifest();
        let (keys, prefixes, next) = list_page(
            manifest.files().iter().map(|f| f.path.as_str()),
            &prefix,
            input.delimiter.as_deref(),
            after,
            max,
        );
        let url = input
            .encoding_type
            .as_ref()
            .is_some_and(|e| e.as_str() == s3s::dto::EncodingType::URL);
        let enc = |s: &str| -> String {
            if url {
                utf8_percent_encode(s, KEY_ESCAPES).to_string()
            } else {
                s.to_string()
            }
        };
        let modified = opened.modified.map(Timestamp::from);
        let contents: Vec<Object> = keys
            .iter()
            .map(|k| {
                let entry = manifest.file(k).expect("listed from the manifest");
                Object {
                    key: Some(enc(k)),
                    size: Some(opened.reader.file_len(entry) as i64),
                    e_tag: Some(etag(entry)),
                    last_modified: modified.clone(),
                    storage_class: Some(s3s::dto::ObjectStorageClass::from_static(
                        s3s::dto::ObjectStorageClass::STANDARD,
                    )),
                    ..Default::default()
                }
            })
            .collect();
        let common: Vec<CommonPrefix> = prefixes
            .iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            delimiter: input.delimiter.as_deref().map(enc),
            start_after: input.start_after.as_deref().map(enc),
            max_keys: Some(max as i32),
            key_count: Some((contents.len() + common.len()) as i32),
            is_truncated: Some(next.is_some()),
            continuation_token: input.continuation_token,
            next_continuation_token: next,
            contents: Some(contents),
            common_prefixes: Some(common),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let opened = self.bucket(input.bucket.clone()).await?;
        let entry = file(&opened, &input.bucket, &input.key)?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(opened.reader.file_len(entry) as i64),
            e_tag: Some(etag(entry)),
            last_modified: opened.modified.map(Timestamp::from),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let opened = self.bucket(input.bucket.clone()).await?;
        let entry = file(&opened, &input.bucket, &input.key)?.clone();
        let len = opened.reader.file_len(&entry);
        let range = match &input.range {
            Some(r) => r.check(len).map_err(|_| {
                s3_error!(
                    InvalidRange,
                    "{} is outside {:?}'s {len} bytes",
                    r.to_header_string(),
                    input.key
                )
            })?,
            None => 0..len,
        };
        let ranged = input.range.is_some();
        let tag = etag(&entry);
        let (tx, mut rx) = mpsc::channel::<Result<Bytes, CliError>>(BODY_CHUNKS_QUEUED);
        let permit = self.0.permits.clone().acquire_owned().await;
        let metrics = self.0.metrics.clone();
        let progress = Progress::hidden();
        let read_range = range.clone();
        let reader = opened.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = Instant::now();
            let mut sink = ChannelWriter {
                tx: &tx,
                metrics: &metrics,
            };
            let bar = progress.bar("", 0);
            match reader.reader.read_file(
                &entry,
                read_range,
                &mut |b| sink.send(b),
                &bar,
                &progress,
            ) {
                Ok(_) if ranged => metrics
                    .range_read_seconds
                    .observe(started.elapsed().as_secs_f64()),
                Ok(_) => {}
                // The client may be gone; then nobody reads this.
                Err(e) => drop(tx.blocking_send(Err(e))),
            }
        });
        // The first chunk decides the answer: a read that fails before any
        // byte is an error response, not a cut body.
        let first = match rx.recv().await {
            Some(Err(e)) => return Err(to_s3(&input.bucket, e)),
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        let body = Body { first, rx };
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some((range.end - range.start) as i64),
            content_range: ranged.then(|| format!("bytes {}-{}/{len}", range.start, range.end - 1)),
            e_tag: Some(tag),
            last_modified: opened.modified.map(Timestamp::from),
            accept_ranges: Some("bytes".into()),
            ..Default::default()
        }))
    }
}

/// Hands verified bytes to the HTTP body, blocking while two chunks wait.
struct ChannelWriter<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, CliError>>,
    metrics: &'a Metrics,
}

impl ChannelWriter<'_> {
    /// Queues verified bytes for the body; fails once the client is gone,
    /// which stops the read.
    fn send(&mut self, buf: &[u8]) -> Result<(), CliError> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| CliError::Refused("the client closed the connection".into()))?;
        self.metrics.bytes_served.inc_by(buf.len() as u64);
        Ok(())
    }
}

/// A GetObject body: the first chunk (already received), then the rest.
struct Body {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, CliError>>,
}

impl futures_util::Stream for Body {
    type Item = Result<Bytes, CliError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.rx.poll_recv(cx)
    }
}

/// The operation a request was routed to, noted by [`Access`] for the
/// metrics.
#[derive(Clone, Default)]
pub struct OpSlot(pub Arc<OnceLock<String>>);

/// Who may do what: with credentials, only signed requests (s3s has checked
/// the signature); `--anonymous`, anyone. Either way it notes the operation.
pub struct Access {
    pub anonymous: bool,
}

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let op = cx.s3_op().name().to_string();
        if let Some(slot) = cx.extensions_mut().get::<OpSlot>() {
            let _ = slot.0.set(op);
        }
        if self.anonymous || cx.credentials().is_some() {
            Ok(())
        } else {
            Err(s3_error!(
                AccessDenied,
                "this gateway answers only requests signed with a key of its config"
            ))
        }
    }
}

/// The SigV4 keys the gateway accepts (none with `--anonymous`: a signed
/// request there names a key it does not know).
pub struct Keys(pub HashMap<String, String>);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        self.0
            .get(access_key)
            .map(|s| s3s::auth::SecretKey::from(s.as_str()))
            .ok_or_else(|| S3Error::new(S3ErrorCode::InvalidAccessKeyId))
    }
}

/// Bucket names: dataset ids (64 hex characters, over S3's 63) and aliases.
pub struct BucketNames;

impl s3s::validation::NameValidation for BucketNames {
    fn validate_bucket_name(&self, name: &str) -> bool {
        name.parse::<DatasetId>().is_ok() || valid_alias(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: [&str; 7] = [
        "a.txt",
        "data/big.bin",
        "data/part-0.parquet",
        "data/sub/x",
        "notes/n.md",
        "z",
        "zz/q",
    ];

    fn page(
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> (Vec<&'static str>, Vec<String>, Option<String>) {
        list_page(KEYS.iter().copied(), prefix, delimiter, after, max)
    }

    #[test]
    fn pages_roll_up_common_prefixes_and_continue_after_their_token() {
        let (k, p, next) = page("", Some("/"), None, 1000);
        assert_eq!(k, ["a.txt", "z"]);
        assert_eq!(p, ["data/", "notes/", "zz/"]);
        assert_eq!(next, None);
        // Two entries a page: a common prefix counts as one and is a token.
        let (k, p, next) = page("", Some("/"), None, 2);
        assert_eq!(
            (k, p, next.as_deref()),
            (vec!["a.txt"], vec!["data/".to_string()], Some("data/"))
        );
        let (k, p, next) = page("", Some("/"), Some("data/"), 2);
        assert_eq!(
            (k, p, next.as_deref()),
            (vec!["z"], vec!["notes/".to_string()], Some("z"))
        );
        let (k, p, next) = page("", Some("/"), Some("z"), 2);
        assert_eq!((k.len(), p, next), (0, vec!["zz/".to_string()], None));
        // Under a prefix, without a delimiter, one key a page.
        let (k, _, next) = page("data/", None, None, 1);
        assert_eq!(
            (k, next.as_deref()),
            (vec!["data/big.bin"], Some("data/big.bin"))
        );
        let (k, _, next) = page("data/", None, Some("data/big.bin"), 5);
        assert_eq!((k, next), (vec!["data/part-0.parquet", "data/sub/x"], None));
        let (k, p, _) = page("data/", Some("/"), None, 5);
        assert_eq!(
            (k, p),
            (
                vec!["data/big.bin", "data/part-0.parquet"],
                vec!["data/sub/".to_string()]
            )
        );
    }

    #[test]
    fn bucket_names_are_dataset_ids_or_aliases() {
        use s3s::validation::NameValidation;
        assert!(BucketNames.validate_bucket_name(&"ab".repeat(32)));
        assert!(BucketNames.validate_bucket_name("my-data"));
        assert!(!BucketNames.validate_bucket_name("My_Data"));
        assert!(!BucketNames.validate_bucket_name(&"ab".repeat(33)));
    }
}
