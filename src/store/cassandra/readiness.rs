//! Whether the driver holds a connection to a node this process may use: the
//! first half of the store's health check, before the health query.
//!
//! The driver keeps a connection pool per node and knows each node's
//! datacenter. With `--cassandra-local-dc` set, requests go to that
//! datacenter's nodes only (the load balancing permits no failover), so the
//! store is usable only while at least one of those is connected; without it,
//! any connected node will do. The query alone cannot tell "no node to send
//! to" from a slow node, and this check costs no round trip.

use scylla::client::session::Session;

use crate::store::StoreError;

/// Fails when no node of `local_dc` (or, with none set, no node at all) has an
/// open connection in the driver's pools.
pub fn require_connected_node(session: &Session, local_dc: Option<&str>) -> Result<(), StoreError> {
    let state = session.get_cluster_state();
    let nodes = state
        .get_nodes_info()
        .iter()
        .map(|node| (node.datacenter.as_deref(), node.is_connected()));
    if has_connected_node(nodes, local_dc) {
        Ok(())
    } else {
        Err(StoreError::Unavailable(match local_dc {
            Some(dc) => format!("no connected Cassandra node in datacenter {dc}"),
            None => "no connected Cassandra node".to_owned(),
        }))
    }
}

/// Whether one of `nodes` (datacenter, connected) is connected and, when
/// `local_dc` is set, in that datacenter.
fn has_connected_node<'a>(
    mut nodes: impl Iterator<Item = (Option<&'a str>, bool)>,
    local_dc: Option<&str>,
) -> bool {
    nodes.any(|(dc, connected)| connected && local_dc.is_none_or(|local| dc == Some(local)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes as (datacenter, connected).
    type Nodes<'a> = &'a [(Option<&'a str>, bool)];

    #[test]
    fn a_connected_node_in_the_local_datacenter_is_needed() {
        let cases: [(Nodes, Option<&str>, bool); 7] = [
            (&[], None, false),
            (&[(Some("dc1"), false)], None, false),
            (&[(Some("dc1"), false), (Some("dc2"), true)], None, true),
            (&[(None, true)], None, true),
            (&[(Some("dc1"), true)], Some("dc1"), true),
            // Connected elsewhere does not count: requests stay in the local DC.
            (
                &[(Some("dc1"), false), (Some("dc2"), true)],
                Some("dc1"),
                false,
            ),
            (&[(None, true)], Some("dc1"), false),
        ];
        for (nodes, local_dc, expected) in cases {
            assert_eq!(
                has_connected_node(nodes.iter().copied(), local_dc),
                expected,
                "{nodes:?} local {local_dc:?}"
            );
        }
    }
}
