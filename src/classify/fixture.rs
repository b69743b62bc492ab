//! The shipped fixture, analysed once, with both role maps: shared by the classify and
//! findings tests.

use crate::capture::Source;
use crate::catalog::roles::Roles;
use crate::catalog::Catalog;
use crate::classify::infer::{infer_roles, RoleMap, TEST_PLAN};
use crate::flow::Flow;
use std::sync::OnceLock;

pub(crate) struct Fix {
    pub flows: Vec<Flow>,
    pub catalog: Catalog,
    /// Roles inferred from the traffic only.
    pub inferred: RoleMap,
    /// The address plan, stated.
    pub stated: RoleMap,
}

pub(crate) fn fix() -> &'static Fix {
    static FIX: OnceLock<Fix> = OnceLock::new();
    FIX.get_or_init(|| {
        let src = Source::Path("fixtures/exchange-scenarios.pcapng".into());
        let (r, flows) = crate::flow::collect_file(&src, &Default::default(), 1);
        assert!(r.error.is_none(), "{:?}", r.error);
        let catalog = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
        let plan = Roles::from_toml_str(TEST_PLAN, "plan.toml").unwrap_or_else(|e| panic!("{e}"));
        Fix {
            inferred: RoleMap::inferred_only(infer_roles(&flows)),
            stated: RoleMap::stated_only(plan),
            flows,
            catalog,
        }
    })
}
