//! `inspect`: the read-only report on a live node (see [`ib3_influx::inspect`]).

use super::create::not_a_node;
use crate::stores::NodeStore;
use anyhow::Result;
use ib3_influx::inspect::Inspection;

/// Run `inspect`.
pub async fn inspect(source: &NodeStore, concurrency: usize) -> Result<Inspection> {
    match ib3_influx::inspect::inspect(
        source.node.as_ref(),
        &source.node_id,
        ib3_influx::rules::CatalogScope::Here,
        concurrency,
    )
    .await
    {
        Err(ib3_influx::Error::NotANode { message }) => Err(not_a_node(source, message).await),
        other => Ok(other?),
    }
}
