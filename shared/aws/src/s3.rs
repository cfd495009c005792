//! S3 as the blob source. Keys are taken as given: S3 event keys arrive URL-encoded and are decoded
//! where events are read (quarry-lambda), never here, so a key with a literal `%` or `+` works.

use std::collections::BTreeMap;

use aws_sdk_s3::Client;
use quarry_core::ports::{Blob, BlobInfo, BlobSource, UploadGrant, UploadGranter};
use quarry_core::{DocumentId, DocumentKey, PortError};
use tracing::instrument;

use crate::port_error;

#[derive(Debug, Clone)]
pub struct S3Source {
    client: Client,
    bucket: String,
    endpoint: Option<String>,
}

impl S3Source {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3Source { client, bucket: bucket.into(), endpoint: None }
    }

    /// The endpoint the client was pointed at (an emulator), where presigned URLs then point.
    pub fn with_endpoint(mut self, endpoint: Option<String>) -> Self {
        self.endpoint = endpoint;
        self
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

/// How long a presigned upload URL stays valid: long enough for a large file on a slow link.
pub const UPLOAD_URL_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

impl UploadGranter for S3Source {
    /// The client's endpoint where one is set (an emulator, path-style), else the bucket's
    /// virtual-hosted endpoint in its region, which is where the SDK presigns for a bucket name
    /// without dots (the template's are).
    fn origin(&self) -> Option<String> {
        let url = match &self.endpoint {
            Some(endpoint) => endpoint.clone(),
            None => format!("https://{}.s3.{}.amazonaws.com", self.bucket, self.client.config().region()?.as_ref()),
        };
        let (scheme, rest) = url.split_once("://")?;
        Some(format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)))
    }

    /// A presigned PUT for exactly this key, size and type, and only if no object has the key
    /// (`If-None-Match: *`, which S3 checks on write even if an object appears after this look).
    /// The URL can do what the signing role can; the bucket's CORS lets the page's origin use it.
    // A taken key is the caller's to fix, not the server's: logged at INFO, not ERROR.
    #[instrument(skip_all, err(level = tracing::Level::INFO))]
    async fn grant(&self, key: &DocumentKey, size: u64, content_type: Option<&str>) -> Result<UploadGrant, PortError> {
        match self.head(key).await {
            Ok(_) => return Err(PortError::Conflict { operation: "s3.grant" }),
            Err(PortError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(UPLOAD_URL_TTL)
            .map_err(|e| PortError::Permanent { operation: "s3.presign", source: Box::new(e) })?;
        let content_type = content_type.filter(|c| !c.is_empty()).unwrap_or("application/octet-stream");
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(|e| port_error("s3.presign", e))?;
        // A browser sets Host and Content-Length itself and refuses to be told them.
        let headers = presigned
            .headers()
            .filter(|(name, _)| !name.eq_ignore_ascii_case("host") && !name.eq_ignore_ascii_case("content-length"))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect();
        Ok(UploadGrant {
            key: key.clone(),
            document_id: DocumentId::for_key(key),
            method: presigned.method().to_owned(),
            url: presigned.uri().to_owned(),
            headers,
            expires_in_s: Some(UPLOAD_URL_TTL.as_secs()),
        })
    }
}
