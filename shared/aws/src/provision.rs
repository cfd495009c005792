//! Creates Quarry's resources the way `template.yaml` declares them, for tests against an emulator
//! and for trying Quarry on an account without SAM. Production deploys use the template.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use aws_sdk_s3vectors::types::{DataType, DistanceMetric, MetadataConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use quarry_core::PortError;

use crate::{Clients, Resources, build_error, port_error, vectors::NON_FILTERABLE};

/// The document queue's DLQ takes a message after this many receives (the template's
/// `maxReceiveCount`).
pub const MAX_RECEIVES: u32 = 5;

/// What [`create`] made, beyond [`Resources`].
#[derive(Debug, Clone)]
pub struct Created {
    pub resources: Resources,
    /// Where the bucket's notifications go; the ingest function reads it.
    pub events_url: String,
    /// The jobs queue's DLQ.
    pub dlq_url: String,
    /// A queue subscribed to the events topic, standing in for the alert router: what was
    /// published, as SNS delivers it.
    pub topic_url: String,
}

/// Creates the bucket with ObjectCreated/ObjectRemoved notifications to an events queue (read by
/// ingest), the jobs queue and its DLQ (read by the embed-workers), the table with TTL, the
/// vector bucket and index, and the events topic with a queue subscribed, all named from `name`.
pub async fn create(clients: &Clients, name: &str, dimension: usize) -> Result<Created, PortError> {
    // The DLQ first: the queue's redrive policy names it.
    let dlq_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| port_error("sqs.create_queue", e))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = queue_arn(clients, &dlq_url).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}).to_string();
    let queue_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-jobs"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .map_err(|e| port_error("sqs.create_queue", e))?
        .queue_url
        .unwrap_or_default();
    let events_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-events"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
        .send()
        .await
        .map_err(|e| port_error("sqs.create_queue", e))?
        .queue_url
        .unwrap_or_default();
    let events_arn = queue_arn(clients, &events_url).await?;

    // The keyword indexer's queue: a document's changes, batched by the function's window.
    let keyword_queue_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-keywords"))
        .attributes(QueueAttributeName::RedrivePolicy, redrive.clone())
        .attributes(QueueAttributeName::VisibilityTimeout, "120")
        .send()
        .await
        .map_err(|e| port_error("sqs.create_queue", e))?
        .queue_url
        .unwrap_or_default();
    // The published keyword index: a bucket of its own, so its writes raise no document events.
    let index_bucket = format!("{name}-index");
    clients.s3.create_bucket().bucket(&index_bucket).send().await.map_err(|e| port_error("s3.create_bucket", e))?;

    let bucket = format!("{name}-docs");
    clients.s3.create_bucket().bucket(&bucket).send().await.map_err(|e| port_error("s3.create_bucket", e))?;
    let notify = QueueConfiguration::builder()
        .queue_arn(&events_arn)
        .events(Event::S3ObjectCreated)
        .events(Event::S3ObjectRemoved)
        .build()
        .map_err(build_error("s3.put_bucket_notification_configuration"))?;
    clients
        .s3
        .put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(NotificationConfiguration::builder().queue_configurations(notify).build())
        .send()
        .await
        .map_err(|e| port_error("s3.put_bucket_notification_configuration", e))?;

    let table = format!("{name}-state");
    let attr = |n: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .map_err(build_error("dynamodb.create_table"))
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder().attribute_name(n).key_type(t).build().map_err(build_error("dynamodb.create_table"))
    };
    clients
        .dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr(crate::dynamo::RECENT_PK, ScalarAttributeType::S)?)
        .attribute_definitions(attr(crate::dynamo::RECENT_SK, ScalarAttributeType::N)?)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(crate::dynamo::RECENT_INDEX)
                .key_schema(key(crate::dynamo::RECENT_PK, KeyType::Hash)?)
                .key_schema(key(crate::dynamo::RECENT_SK, KeyType::Range)?)
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .map_err(build_error("dynamodb.create_table"))?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .map_err(|e| port_error("dynamodb.create_table", e))?;
    clients
        .dynamodb
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .map_err(build_error("dynamodb.update_time_to_live"))?,
        )
        .send()
        .await
        .map_err(|e| port_error("dynamodb.update_time_to_live", e))?;

    let vector_bucket = format!("{name}-vectors");
    let vector_index = "chunks".to_owned();
    clients
        .s3vectors
        .create_vector_bucket()
        .vector_bucket_name(&vector_bucket)
        .send()
        .await
        .map_err(|e| port_error("s3vectors.create_vector_bucket", e))?;
    clients
        .s3vectors
        .create_index()
        .vector_bucket_name(&vector_bucket)
        .index_name(&vector_index)
        .data_type(DataType::Float32)
        .dimension(dimension as i32)
        .distance_metric(DistanceMetric::Cosine)
        .metadata_configuration(
            MetadataConfiguration::builder()
                .set_non_filterable_metadata_keys(Some(NON_FILTERABLE.iter().map(|k| (*k).to_owned()).collect()))
                .build()
                .map_err(build_error("s3vectors.create_index"))?,
        )
        .send()
        .await
        .map_err(|e| port_error("s3vectors.create_index", e))?;

    let topic = clients
        .sns
        .create_topic()
        .name(format!("{name}-alarms"))
        .send()
        .await
        .map_err(|e| port_error("sns.create_topic", e))?
        .topic_arn
        .unwrap_or_default();
    let topic_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{name}-topic"))
        .send()
        .await
        .map_err(|e| port_error("sqs.create_queue", e))?
        .queue_url
        .unwrap_or_default();
    clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn(clients, &topic_url).await?)
        .send()
        .await
        .map_err(|e| port_error("sns.subscribe", e))?;

    let resources = Resources {
        bucket,
        queue_url,
        table,
        vector_bucket,
        vector_index,
        events_topic: Some(topic),
        index_bucket: Some(index_bucket),
        keyword_queue_url: Some(keyword_queue_url),
    };
    Ok(Created { resources, events_url, dlq_url, topic_url })
}

async fn queue_arn(clients: &Clients, url: &str) -> Result<String, PortError> {
    let out = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| port_error("sqs.get_queue_attributes", e))?;
    Ok(out.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().unwrap_or_default())
}

/// A deployment on the emulator at `endpoint` for a function's own binary: resources created under
/// `name`, `objects` put in its bucket, and the environment the template sets for every function
/// (the resources' names) with the endpoint that points the SDK at the emulator.
pub async fn emulated(
    endpoint: &str,
    name: &str,
    dimension: usize,
    objects: &[(&str, &[u8])],
) -> Result<Vec<(&'static str, String)>, PortError> {
    let clients = Clients::emulator(endpoint).await;
    let created = create(&clients, name, dimension).await?;
    for (key, body) in objects {
        let put = clients.s3.put_object().bucket(&created.resources.bucket).key(*key).body(body.to_vec().into());
        put.send().await.map_err(|e| port_error("s3.put_object", e))?;
    }
    let mut env = vec![("QUARRY_AWS_ENDPOINT_URL", endpoint.to_owned())];
    env.extend(created.resources.env());
    Ok(env)
}
