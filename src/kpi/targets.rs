//! Targets per KPI for weeks and months (docs/kpi.md "Comparisons and targets"), as the
//! config's `[targets]` gives them: the default, each manager's own, the department's.

use std::collections::BTreeMap;

use crate::domain::{Id, PeriodKind};

use super::catalog::Kpi;

/// KPI to target value.
pub type TargetSet = BTreeMap<Kpi, f64>;

/// Targets for weeks and months.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeriodTargets {
    pub week: TargetSet,
    pub month: TargetSet,
}

impl PeriodTargets {
    pub fn for_kind(&self, kind: PeriodKind) -> Option<&TargetSet> {
        match kind {
            PeriodKind::Week => Some(&self.week),
            PeriodKind::Month => Some(&self.month),
            PeriodKind::Custom => None,
        }
    }
}

/// `[targets]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Targets {
    pub default: PeriodTargets,
    pub managers: BTreeMap<Id, PeriodTargets>,
    pub department: PeriodTargets,
}

impl Targets {
    /// A manager's target for a KPI: their own, else the default, else none (docs/kpi.md).
    pub fn manager(&self, manager: Id, kind: PeriodKind, kpi: Kpi) -> Option<f64> {
        let own = self.managers.get(&manager).and_then(|t| t.for_kind(kind)).and_then(|s| s.get(&kpi));
        own.or_else(|| self.default.for_kind(kind).and_then(|s| s.get(&kpi))).copied()
    }

    /// The department's own target for a KPI, if the config gives one.
    pub fn department(&self, kind: PeriodKind, kpi: Kpi) -> Option<f64> {
        self.department.for_kind(kind).and_then(|s| s.get(&kpi)).copied()
    }
}
