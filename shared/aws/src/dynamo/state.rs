//! Documents: leases, checkpoints and failures by conditional write ([`CheckpointStore`]), and
//! one document's state for the API ([`DocumentReader`]).

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use quarry_core::census::StateCensus;
use quarry_core::ports::{Checkpoint, CheckpointStore, DocumentReader, DocumentRecord, Lease};
use quarry_core::{ContentHash, DocumentId, DocumentKey, DocumentStatus, Failure, PortError};
use tracing::instrument;

use super::{DynamoState, Item, RACES, doc_key, failure_of, get_n, get_s, n, s};
use crate::port_error;

impl CheckpointStore for DynamoState {
    #[instrument(skip_all, err)]
    async fn acquire(
        &self,
        document: &DocumentId,
        content_hash: &ContentHash,
        lease: Duration,
    ) -> Result<Lease, PortError> {
        for _ in 0..RACES {
            let now = (self.clock)();
            let item = self.read("dynamodb.acquire", doc_key(document)).await?;
            let attempts = match &item {
                Some(i) => {
                    let (status, hash) = (get_s(i, "status"), get_s(i, "hash"));
                    if status == Some("indexed") && hash == Some(content_hash.as_str()) {
                        return Ok(Lease::AlreadyIndexed {
                            chunks: get_n(i, "chunks").unwrap_or(0) as u32,
                            indexed_ms: get_n(i, "updated_ms").unwrap_or(0),
                        });
                    }
                    if status == Some("processing") && get_n(i, "lease_until").is_some_and(|u| u > now) {
                        return Ok(Lease::Busy);
                    }
                    // Attempts count per content: a new version starts again at 1.
                    if hash == Some(content_hash.as_str()) { get_n(i, "attempts").unwrap_or(0) + 1 } else { 1 }
                }
                None => 1,
            };
            let rev = item.as_ref().and_then(|i| get_n(i, "rev")).unwrap_or(0);
            let mut req = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(doc_key(document)))
                .update_expression(
                    "SET #h = :h, #s = :p, attempts = :a, lease_until = :u, updated_ms = :now, rev = :next",
                )
                .expression_attribute_names("#h", "hash")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":h", s(content_hash.as_str()))
                .expression_attribute_values(":p", s("processing"))
                .expression_attribute_values(":a", n(attempts))
                .expression_attribute_values(":u", n(now + lease.as_millis() as i64))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":next", n(rev + 1));
            req = if item.is_some() {
                req.condition_expression("rev = :rev").expression_attribute_values(":rev", n(rev))
            } else {
                req.condition_expression("attribute_not_exists(pk)")
            };
            match req.send().await {
                Ok(_) => return Ok(Lease::Acquired { attempt: attempts as u32, expires_in: lease }),
                // Another worker changed the document between our read and write: look again.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(port_error("dynamodb.acquire", e)),
            }
        }
        Ok(Lease::Busy)
    }

    #[instrument(skip_all, err)]
    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), PortError> {
        let set = "SET #k = :k, #h = :h, #s = :s, chunks = :c, model = :m, updated_ms = :now, \
                   rev = if_not_exists(rev, :zero) + :one";
        let expression = match &c.handle {
            Some(_) => format!("{set}, handle = :hd REMOVE lease_until, fcode, fmsg, fretry"),
            None => format!("{set} REMOVE lease_until, fcode, fmsg, fretry, handle"),
        };
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(&c.document)))
            .update_expression(expression)
            .set_expression_attribute_values(c.handle.as_ref().map(|h| [(":hd".to_owned(), s(h))].into()))
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#h", "hash")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":k", s(c.key.as_str()))
            .expression_attribute_values(":h", s(c.content_hash.as_str()))
            .expression_attribute_values(":s", s("indexed"))
            .expression_attribute_values(":c", n(c.chunks))
            .expression_attribute_values(":m", s(&c.model))
            .expression_attribute_values(":now", n((self.clock)()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.checkpoint", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn fail(&self, document: &DocumentId, key: &DocumentKey, failure: &Failure) -> Result<(), PortError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(document)))
            .update_expression(
                "SET #k = :k, #s = :s, fcode = :fc, fmsg = :fm, fretry = :fr, updated_ms = :now, \
                 rev = if_not_exists(rev, :zero) + :one REMOVE lease_until",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":k", s(key.as_str()))
            .expression_attribute_values(":s", s("failed"))
            .expression_attribute_values(":fc", s(&failure.code))
            .expression_attribute_values(":fm", s(&failure.message))
            .expression_attribute_values(":fr", AttributeValue::Bool(failure.retryable))
            .expression_attribute_values(":now", n((self.clock)()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.fail", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn release(&self, document: &DocumentId) -> Result<(), PortError> {
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(document)))
            .update_expression("SET #s = :pending, updated_ms = :now, rev = rev + :one REMOVE lease_until")
            .condition_expression("#s = :processing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":now", n((self.clock)()))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        match sent {
            // Not processing (anymore): nothing to give back.
            Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(port_error("dynamodb.release", e)),
            Ok(_) => Ok(()),
        }
    }

    #[instrument(skip_all, err)]
    async fn forget(&self, document: &DocumentId) -> Result<(), PortError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(doc_key(document)))
            .send()
            .await
            .map_err(|e| port_error("dynamodb.forget", e))?;
        Ok(())
    }

    #[instrument(skip_all, err)]
    async fn handle(&self, document: &DocumentId) -> Result<Option<String>, PortError> {
        let item = self.read("dynamodb.handle", doc_key(document)).await?;
        Ok(item.as_ref().and_then(|i| get_s(i, "handle")).map(str::to_owned))
    }
}

impl DocumentReader for DynamoState {
    #[instrument(skip_all, err)]
    async fn document(&self, id: &DocumentId) -> Result<Option<DocumentRecord>, PortError> {
        let item = self.read("dynamodb.document", doc_key(id)).await?;
        Ok(item.map(|item| record(id.clone(), &item)))
    }
}

fn record(id: DocumentId, item: &Item) -> DocumentRecord {
    let status = match get_s(item, "status") {
        Some("indexed") => DocumentStatus::Indexed { chunks: get_n(item, "chunks").unwrap_or(0) as u32 },
        Some("failed") => match failure_of(item) {
            Some(failure) => DocumentStatus::Failed { failure },
            None => DocumentStatus::Pending,
        },
        Some("processing") => DocumentStatus::Processing { attempt: get_n(item, "attempts").unwrap_or(1) as u32 },
        _ => DocumentStatus::Pending,
    };
    DocumentRecord {
        id,
        key: get_s(item, "key").map(DocumentKey::new),
        content_hash: get_s(item, "hash").map(|h| ContentHash::from_stored(h.to_owned())),
        model: get_s(item, "model").map(str::to_owned),
        status,
        updated_ms: get_n(item, "updated_ms").unwrap_or(0),
        handle: get_s(item, "handle").map(str::to_owned),
    }
}

impl StateCensus for DynamoState {
    /// A paginated scan of the table for its document items (`sk = doc`).
    #[instrument(skip_all, err)]
    async fn documents(&self) -> Result<Vec<DocumentRecord>, PortError> {
        let items = self.scan_sk("dynamodb.census", "doc", true).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let id = get_s(item, "pk").and_then(|pk| pk.strip_prefix("doc#")).and_then(DocumentId::parse)?;
                Some(record(id, item))
            })
            .collect())
    }
}
