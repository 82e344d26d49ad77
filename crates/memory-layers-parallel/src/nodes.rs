//! Several processes (nodes) in one run through burn-collective's global mode: an
//! orchestrator every node registers with, and a tensor service on each node that the others
//! download from. Within a node, peers are threads, as in a single-process run.

use std::str::FromStr;

use burn::collective::CollectiveConfig;
use burn_communication::Address;

use crate::ParallelError;

/// burn-collective settings for one node of `nodes` with `local_devices` peers, the
/// orchestrator at `orchestrator` and this node reachable at `address` (both
/// `ws://host:port`; the node serves tensors on its address's port).
pub fn node_config(
    local_devices: usize,
    nodes: usize,
    orchestrator: &str,
    address: &str,
) -> Result<CollectiveConfig, ParallelError> {
    let port = ws_port(address)?;
    ws_port(orchestrator)?;
    let nodes = u32::try_from(nodes)
        .map_err(|_| ParallelError::Layout(format!("{nodes} nodes are too many")))?;
    let parse = |a: &str| {
        Address::from_str(a).map_err(|e| ParallelError::Layout(format!("address {a}: {e}")))
    };
    Ok(CollectiveConfig::default()
        .with_num_devices(local_devices)
        .with_num_nodes(nodes)
        .with_global_address(parse(orchestrator)?)
        .with_node_address(parse(address)?)
        .with_data_service_port(port))
}

/// The port of a `ws://host:port` address.
fn ws_port(address: &str) -> Result<u16, ParallelError> {
    address
        .strip_prefix("ws://")
        .and_then(|rest| rest.trim_end_matches('/').rsplit_once(':'))
        .and_then(|(host, port)| (!host.is_empty()).then(|| port.parse().ok()).flatten())
        .ok_or_else(|| {
            ParallelError::Layout(format!(
                "{address:?} is not an address of the form ws://host:port"
            ))
        })
}

/// Runs the orchestrator of a multi-node run on `port` until the process is interrupted.
pub fn run_orchestrator(port: u16) -> Result<(), ParallelError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ParallelError::Collective {
            op: "orchestrator",
            message: e.to_string(),
        })?
        .block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_need_a_host_and_a_port() {
        assert_eq!(ws_port("ws://127.0.0.1:3001").unwrap(), 3001);
        assert_eq!(ws_port("ws://node-7:40000/").unwrap(), 40000);
        for bad in [
            "127.0.0.1:3001",
            "ws://:3001",
            "ws://host",
            "ws://host:x",
            "ws://h:70000",
        ] {
            assert!(ws_port(bad).is_err(), "{bad}");
        }
        assert!(node_config(2, 2, "ws://a:1", "http://b:2").is_err());
        assert!(node_config(2, 2, "ws://a:1", "ws://b:2").is_ok());
    }
}
