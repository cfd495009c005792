//! S3 as the blob source. Keys are taken as given: S3 event keys arrive URL-encoded and are decoded
//! where events are read (quarry-lambda), never here, so a key with a literal `%` or `+` works.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use quarry_core::ports::{Blob, BlobInfo, BlobSource};
use quarry_core::{DocumentKey, PortError};
use tracing::instrument;

use crate::port_error;

#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
    bucket: String,
}

impl S3Source {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Source { client, bucket: bucket.into() }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

fn not_found(key: &DocumentKey) -> PortError {
    PortError::NotFound { what: format!("object {}", key.as_str()) }
}

fn metadata(m: Option<&std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect()).unwrap_or_default()
}

/// What HeadObject and GetObject both say about an object.
fn info(
    key: &DocumentKey,
    length: Option<i64>,
    etag: Option<&str>,
    content_type: Option<&str>,
    meta: Option<&std::collections::HashMap<String, String>>,
) -> BlobInfo {
    BlobInfo {
        key: key.clone(),
        size: length.unwrap_or(0).max(0) as u64,
        version: etag.map(str::to_owned),
        content_type: content_type.map(str::to_owned),
        metadata: metadata(meta),
    }
}

impl BlobSource for S3Source {
    #[instrument(skip_all, err)]
    async fn head(&self, key: &DocumentKey) -> Result<BlobInfo, PortError> {
        let out = self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                not_found(key)
            } else {
                port_error("s3.head_object", e)
            }
        })?;
        Ok(info(key, out.content_length(), out.e_tag(), out.content_type(), out.metadata()))
    }

    #[instrument(skip_all, err)]
    async fn get(&self, key: &DocumentKey) -> Result<Blob, PortError> {
        let out = self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_no_such_key()) {
                not_found(key)
            } else {
                port_error("s3.get_object", e)
            }
        })?;
        let info = info(key, out.content_length(), out.e_tag(), out.content_type(), out.metadata());
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::Transient { operation: "s3.get_object.body", source: Box::new(e) })?
            .into_bytes()
            .to_vec();
        Ok(Blob { info: BlobInfo { size: bytes.len() as u64, ..info }, bytes })
    }

    #[instrument(skip_all, err)]
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, PortError> {
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| port_error("s3.list_objects_v2", e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                // "Folders" made in the console are zero-byte keys ending in '/': not documents.
                if key.ends_with('/') {
                    continue;
                }
                out.push(BlobInfo {
                    key: DocumentKey::new(key),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    version: o.e_tag().map(str::to_owned),
                    content_type: None,
                    metadata: BTreeMap::new(),
                });
            }
        }
        Ok(out)
    }
}
