//! Checks of the cluster the store connected to, against what the settings
//! assume: which datacenters exist, and whether the keyspace's replication can
//! survive a node loss.
//!
//! A datacenter name that matches no node gives every request an empty query
//! plan, which the driver reports as "unavailable" forever; with several
//! datacenters and none chosen, requests cross datacenters. Both are
//! configuration errors, so `connect` fails with a message that says which
//! datacenters exist. Replication is not ours to change (the keyspace may be
//! shared, and altering it needs a repair), so a risky strategy is a loud
//! warning, not an error. The checks are pure functions of the driver's cluster
//! state, tested without a cluster.

use std::collections::BTreeSet;

use scylla::client::session::Session;
use scylla::cluster::metadata::Strategy;

use super::{CassandraSettings, StoreError};

/// Replicas per datacenter below which losing nodes loses quorum or data.
pub const SAFE_REPLICATION_FACTOR: usize = 3;

/// Fails when the local datacenter setting does not fit the cluster; returns a
/// warning when the keyspace's replication is risky.
pub fn check(
    session: &Session,
    settings: &CassandraSettings,
) -> Result<Option<String>, StoreError> {
    let state = session.get_cluster_state();
    let datacenters: BTreeSet<String> = state
        .get_nodes_info()
        .iter()
        .filter_map(|node| node.datacenter.clone())
        .collect();
    check_datacenters(&datacenters, settings.local_dc.as_deref()).map_err(StoreError::Backend)?;
    let warning = state.get_keyspace(&settings.keyspace).and_then(|keyspace| {
        replication_warning(
            &settings.keyspace,
            &keyspace.strategy,
            settings.local_dc.as_deref(),
        )
    });
    if let Some(warning) = &warning {
        tracing::warn!("{warning}");
    }
    Ok(warning)
}

/// Whether `local_dc` names a datacenter of the cluster, and is given when the
/// cluster has more than one.
pub fn check_datacenters(
    datacenters: &BTreeSet<String>,
    local_dc: Option<&str>,
) -> Result<(), String> {
    let known = || datacenters.iter().cloned().collect::<Vec<_>>().join(", ");
    match local_dc {
        Some(dc) if !datacenters.is_empty() && !datacenters.contains(dc) => Err(format!(
            "misconfigured: --cassandra-local-dc / RESUME_CASSANDRA_LOCAL_DC is {dc:?}, \
             but the cluster's datacenters are: {}",
            known()
        )),
        None if datacenters.len() > 1 => Err(format!(
            "misconfigured: the cluster has several datacenters ({}); set \
             --cassandra-local-dc / RESUME_CASSANDRA_LOCAL_DC to the one this server runs in",
            known()
        )),
        _ => Ok(()),
    }
}

/// A warning when `strategy` keeps fewer than [`SAFE_REPLICATION_FACTOR`]
/// replicas (in the local datacenter, or in any when none is set), or is
/// SimpleStrategy, which ignores racks and datacenters.
pub fn replication_warning(
    keyspace: &str,
    strategy: &Strategy,
    local_dc: Option<&str>,
) -> Option<String> {
    let advice = format!(
        "use NetworkTopologyStrategy with {SAFE_REPLICATION_FACTOR} replicas per datacenter \
         (ALTER KEYSPACE {keyspace} WITH replication = {{'class': 'NetworkTopologyStrategy', \
         '<dc>': {SAFE_REPLICATION_FACTOR}}}, then a full repair)"
    );
    match strategy {
        Strategy::SimpleStrategy { replication_factor } => Some(format!(
            "keyspace {keyspace} uses SimpleStrategy with {replication_factor} replica(s), \
             which ignores racks and datacenters: {advice}"
        )),
        Strategy::NetworkTopologyStrategy {
            datacenter_repfactors,
        } => {
            let mut thin: Vec<String> = datacenter_repfactors
                .iter()
                .filter(|(dc, _)| local_dc.is_none_or(|local| local == dc.as_str()))
                .filter(|(_, rf)| **rf < SAFE_REPLICATION_FACTOR)
                .map(|(dc, rf)| format!("{dc}: {rf}"))
                .collect();
            thin.sort();
            let local_missing = local_dc.is_some_and(|dc| !datacenter_repfactors.contains_key(dc));
            if local_missing {
                thin.push(format!("{}: 0", local_dc.unwrap_or_default()));
            }
            (!thin.is_empty()).then(|| {
                format!(
                    "keyspace {keyspace} keeps fewer than {SAFE_REPLICATION_FACTOR} replicas ({}): {advice}",
                    thin.join(", ")
                )
            })
        }
        _ => Some(format!(
            "keyspace {keyspace} has a replication strategy the server cannot check: {advice}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn dcs(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_local_datacenter_must_exist_and_is_needed_with_several() {
        // (datacenters, local dc, ok)
        let table: [(&[&str], Option<&str>, bool); 6] = [
            (&["dc1"], None, true),
            (&["dc1"], Some("dc1"), true),
            (&["dc1"], Some("dc-1"), false),
            (&["dc1", "dc2"], None, false),
            (&["dc1", "dc2"], Some("dc2"), true),
            (&[], Some("dc1"), true),
        ];
        for (names, local, ok) in table {
            let result = check_datacenters(&dcs(names), local);
            assert_eq!(result.is_ok(), ok, "{names:?} with {local:?}: {result:?}");
            if let Err(message) = result {
                assert!(message.contains("--cassandra-local-dc"), "{message}");
                assert!(names.iter().all(|n| message.contains(n)), "{message}");
            }
        }
    }

    #[test]
    fn replication_below_three_or_simple_strategy_warns() {
        let nts = |pairs: &[(&str, usize)]| Strategy::NetworkTopologyStrategy {
            datacenter_repfactors: pairs
                .iter()
                .map(|(dc, rf)| (dc.to_string(), *rf))
                .collect::<HashMap<_, _>>(),
        };
        // (strategy, local dc, warns)
        let table = [
            (
                Strategy::SimpleStrategy {
                    replication_factor: 3,
                },
                None,
                true,
            ),
            (nts(&[("dc1", 3)]), None, false),
            (nts(&[("dc1", 3)]), Some("dc1"), false),
            (nts(&[("dc1", 2)]), Some("dc1"), true),
            (nts(&[("dc1", 3), ("dc2", 1)]), Some("dc1"), false),
            (nts(&[("dc1", 3), ("dc2", 1)]), None, true),
            (nts(&[("dc2", 3)]), Some("dc1"), true),
        ];
        for (strategy, local, warns) in table {
            let warning = replication_warning("resume", &strategy, local);
            assert_eq!(
                warning.is_some(),
                warns,
                "{strategy:?} / {local:?}: {warning:?}"
            );
        }
    }
}
