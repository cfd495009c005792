//! The published keyword index's AWS adapters ([`quarry_core::keywords`]): its files and manifest
//! in an S3 bucket under `keywords/`, the manifest replaced only by a conditional PutObject
//! (`If-Match` the ETag read, or `If-None-Match: *` for the first), and the changes feed on SQS.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use aws_sdk_sqs::Client as SqsClient;
use quarry_core::PortError;
use quarry_core::keywords::{ChangeFeed, ChunkChange, IndexFiles, ManifestRead};
use tracing::instrument;

use crate::{build_error, port_error};

/// Where the index lives in its bucket.
pub const PREFIX: &str = "keywords/";
const MANIFEST: &str = "keywords/manifest.json";
/// DeleteObjects' limit.
const DELETE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct S3IndexFiles {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3IndexFiles {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        S3IndexFiles { client, bucket: bucket.into() }
    }
}

/// The HTTP status of a service error, if the service answered.
fn status<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

impl IndexFiles for S3IndexFiles {
    #[instrument(skip_all, err)]
    async fn manifest(&self, known: Option<&str>) -> Result<ManifestRead, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(MANIFEST)
            .set_if_none_match(known.map(str::to_owned))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if status(&e) == Some(304) => return Ok(ManifestRead::Unchanged),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status(&e) == Some(404) => {
                return Ok(ManifestRead::Missing);
            }
            Err(e) => return Err(port_error("s3.get_manifest", e)),
        };
        let tag = out.e_tag().unwrap_or_default().to_owned();
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient { operation: "s3.get_manifest", source: Box::new(e) })?
            .into_bytes()
            .to_vec();
        Ok(ManifestRead::Found { bytes, tag })
    }

    /// S3 answers a lost race with 412 (the ETag no longer matches, or the object now exists)
    /// or 409 (a concurrent conditional write in flight); `If-Match` on a manifest deleted since
    /// answers 404. All three mean another writer's manifest is the one to start from.
    #[instrument(skip_all, err)]
    async fn publish(&self, bytes: &[u8], replaces: Option<&str>) -> Result<String, PortError> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(MANIFEST)
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()));
        put = match replaces {
            Some(tag) => put.if_match(tag),
            None => put.if_none_match("*"),
        };
        match put.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_owned()),
            Err(e) if matches!(status(&e), Some(412 | 409 | 404)) => {
                Err(PortError::Conflict { operation: "s3.publish_manifest" })
            }
            Err(e) => Err(port_error("s3.publish_manifest", e)),
        }
    }

    #[instrument(skip_all, err)]
    async fn get(&self, name: &str) -> Result<Vec<u8>, PortError> {
        let out =
            self.client.get_object().bucket(&self.bucket).key(format!("{PREFIX}{name}")).send().await.map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                    PortError::NotFound { what: format!("keyword index file {name}") }
                } else {
                    port_error("s3.get_index_file", e)
                }
            })?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient { operation: "s3.get_index_file", source: Box::new(e) })?
            .into_bytes()
            .to_vec())
    }

    #[instrument(skip_all, err)]
    async fn put(&self, name: &str, bytes: &[u8]) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(format!("{PREFIX}{name}"))
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(|e| port_error("s3.put_index_file", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn delete(&self, names: &[String]) -> Result<(), PortError> {
        for group in names.chunks(DELETE_BATCH) {
            let objects = group
                .iter()
                .map(|n| {
                    ObjectIdentifier::builder()
                        .key(format!("{PREFIX}{n}"))
                        .build()
                        .map_err(build_error("s3.delete_index_files"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(build_error("s3.delete_index_files"))?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| port_error("s3.delete_index_files", e))?;
        }
        Ok(())
    }

    /// ListObjectsV2 under the prefix, a thousand keys a page.
    #[instrument(skip_all, err)]
    async fn list(&self) -> Result<Vec<(String, i64)>, PortError> {
        let mut out = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(PREFIX).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("s3.list_index_files", e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                if key == MANIFEST {
                    continue;
                }
                let Some(name) = key.strip_prefix(PREFIX) else { continue };
                let written = o.last_modified().and_then(|t| t.to_millis().ok()).unwrap_or(0);
                out.push((name.to_owned(), written));
            }
        }
        Ok(out)
    }
}

/// The changes feed on SQS: one small message per changed document.
#[derive(Debug, Clone)]
pub struct SqsChanges {
    client: SqsClient,
    queue_url: String,
}

impl SqsChanges {
    pub fn new(client: SqsClient, queue_url: impl Into<String>) -> Self {
        SqsChanges { client, queue_url: queue_url.into() }
    }
}

impl ChangeFeed for SqsChanges {
    #[instrument(skip_all, err)]
    async fn changed(&self, change: &ChunkChange) -> Result<(), PortError> {
        let body = serde_json::to_string(change)
            .map_err(|e| PortError::Permanent { operation: "sqs.encode_change", source: Box::new(e) })?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| port_error("sqs.send_change", e))?;
        Ok(())
    }
}
