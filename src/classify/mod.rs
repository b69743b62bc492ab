//! Cross-flow knowledge, applied as flows end (in the flow table's close order, so the
//! result never depends on the thread count).
//!
//! [`EpmLabels`]: a DCE/RPC endpoint-mapper answer on port 135 says which dynamic port
//! serves which interface (`epm.map` facts). A later flow to that address and port whose
//! bind was not captured is then labelled with the interface, and says the label came
//! from the endpoint mapper (`dcerpc.interface-from-epm`).

#[cfg(test)]
pub(crate) mod fixture;
pub mod infer;
pub mod paths;

use crate::flow::{Flow, FlowSink};
use crate::proto::uuids::{lookup, Uuid};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Endpoint-mapper answers remembered (oldest forgotten first).
pub const MAX_EPM_ENTRIES: usize = 65_536;

/// Wraps a sink; labels dynamic-port RPC flows from earlier endpoint-mapper answers.
pub struct EpmLabels<'a> {
    inner: &'a mut dyn FlowSink,
    map: HashMap<SocketAddr, String>,
    order: VecDeque<SocketAddr>,
}

impl<'a> EpmLabels<'a> {
    pub fn new(inner: &'a mut dyn FlowSink) -> Self {
        EpmLabels {
            inner,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn learn(&mut self, f: &Flow) {
        let Some(maps) = f.posture.facts.get("epm.map") else {
            return;
        };
        for m in maps.iter() {
            let Some((uuid, endpoint)) = m.split_once('@') else {
                continue;
            };
            let Ok(at) = endpoint.parse::<SocketAddr>() else {
                continue;
            };
            let name = Uuid::from_text(uuid)
                .and_then(|u| lookup(&u))
                .map_or_else(|| uuid.to_string(), |i| i.name.to_string());
            if self.map.insert(at, name).is_none() {
                self.order.push_back(at);
                if self.order.len() > MAX_EPM_ENTRIES {
                    if let Some(old) = self.order.pop_front() {
                        self.map.remove(&old);
                    }
                }
            }
        }
    }

    fn label(&self, f: &mut Flow) {
        if f.posture.facts.contains_key("dcerpc.interface") {
            return; // the bind itself was seen
        }
        let Some(name) = self.map.get(&f.server) else {
            return;
        };
        f.posture.fact("dcerpc.interface-from-epm", name.clone());
        if f.posture.protocol.is_none() {
            f.posture.protocol = Some("dcerpc");
            f.posture.detected_by = Some("epm");
        }
    }
}

impl FlowSink for EpmLabels<'_> {
    fn flow(&mut self, f: &mut Flow) {
        self.label(f);
        self.learn(f);
        self.inner.flow(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;

    fn flow(id: u64, server: &str) -> Flow {
        let mut f = Flow::sample(Transport::Tcp, "10.2.0.22:50000", server);
        f.id = id;
        f.conversation_frame = id;
        f.stream = Some(id);
        f.first_frame = id;
        f.last_frame = id;
        f.frames = [1, 1];
        f.bytes = [60, 60];
        f.payload = [0, 0];
        f
    }

    #[test]
    fn endpoint_mapper_answer_labels_a_later_flow_without_bind() {
        let mut out: Vec<Flow> = Vec::new();
        {
            let mut l = EpmLabels::new(&mut out);
            let mut epm = flow(0, "10.1.0.30:135");
            epm.posture.fact(
                "epm.map",
                "a4f1db00-ca47-1067-b31f-00dd010662da@10.1.0.30:59532",
            );
            l.flow(&mut epm);
            // bind not captured: labelled from the map
            l.flow(&mut flow(1, "10.1.0.30:59532"));
            // bind captured: its own interface stands, no second label
            let mut bound = flow(2, "10.1.0.30:59532");
            bound.posture.protocol = Some("dcerpc");
            bound.posture.fact("dcerpc.interface", "emsmdb");
            l.flow(&mut bound);
            // another port: untouched
            l.flow(&mut flow(3, "10.1.0.30:59533"));
        }
        assert!(out[1]
            .posture
            .has_fact("dcerpc.interface-from-epm", "emsmdb"));
        assert_eq!(out[1].posture.protocol, Some("dcerpc"));
        assert_eq!(out[1].posture.detected_by, Some("epm"));
        assert!(!out[2]
            .posture
            .facts
            .contains_key("dcerpc.interface-from-epm"));
        assert_eq!(out[3].posture.protocol, None);
    }

    #[test]
    fn the_map_is_bounded() {
        let mut out: Vec<Flow> = Vec::new();
        let mut l = EpmLabels::new(&mut out);
        for i in 0..(MAX_EPM_ENTRIES + 10) {
            let mut epm = flow(0, "10.1.0.30:135");
            let port = 1024 + (i % 60_000);
            let host = i / 60_000;
            epm.posture
                .fact("epm.map", format!("x@10.1.{host}.30:{port}"));
            l.flow(&mut epm);
        }
        assert!(l.map.len() <= MAX_EPM_ENTRIES);
    }
}
