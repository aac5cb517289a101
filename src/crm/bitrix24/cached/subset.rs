//! The cached subsets of a portal (see `cached`'s module doc), their filters as the portal
//! applies them and as this side re-applies them to cached rows, and the time ranges a
//! subset is cut into when its count differs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::super::paging::ListJob;
use super::super::plan::{self, HISTORY_FIELDS};
use super::super::wire::{self, WireRow};
use crate::domain::{Id, Timestamp};
use crate::store::cache::Entity;

/// The cached subsets (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Subset {
    DealsModified,
    DealsOpen,
    Leads,
    Activities,
    History,
}

pub(super) const SUBSETS: [Subset; 5] =
    [Subset::DealsModified, Subset::DealsOpen, Subset::Leads, Subset::Activities, Subset::History];
pub(super) const LEAD_SELECT: [&str; 6] =
    ["ID", "ASSIGNED_BY_ID", "DATE_CREATE", "STATUS_SEMANTIC_ID", "SOURCE_ID", "DATE_MODIFY"];
pub(super) const ACTIVITY_SELECT: [&str; 7] =
    ["ID", "RESPONSIBLE_ID", "TYPE_ID", "DIRECTION", "COMPLETED", "CREATED", "LAST_UPDATED"];

/// The fields selected for an entity's rows in the cache.
pub(super) fn select_of<'a>(entity: Entity, deal_select: &'a [&'a str]) -> &'a [&'a str] {
    match entity {
        Entity::Deal => deal_select,
        Entity::Lead => &LEAD_SELECT,
        Entity::Activity => &ACTIVITY_SELECT,
        Entity::History | Entity::ProductRows => &HISTORY_FIELDS,
    }
}

impl Subset {
    pub(super) fn name(self) -> &'static str {
        match self {
            Subset::DealsModified => "deals modified",
            Subset::DealsOpen => "open deals",
            Subset::Leads => "leads",
            Subset::Activities => "activities",
            Subset::History => "stage history",
        }
    }

    pub(super) fn entity(self) -> Entity {
        match self {
            Subset::DealsModified | Subset::DealsOpen => Entity::Deal,
            Subset::Leads => Entity::Lead,
            Subset::Activities => Entity::Activity,
            Subset::History => Entity::History,
        }
    }

    /// The list of the subset on the portal.
    pub(super) fn job(self, cs: &Timestamp, select: &[&str]) -> ListJob {
        let cs = Value::String(cs.to_rfc3339());
        match self {
            Subset::DealsModified => plan::deal_job(json!({">=DATE_MODIFY": cs}), select),
            Subset::DealsOpen => plan::deal_job(json!({"STAGE_SEMANTIC_ID": "P"}), select),
            Subset::Leads => plan::lead_job(json!({">=DATE_CREATE": cs}), select),
            Subset::Activities => plan::activity_job(">=CREATED", cs, select),
            Subset::History => plan::history_job(json!({">=CREATED_TIME": cs}), select),
        }
    }

    /// The time field its ranges are cut by.
    fn field(self) -> &'static str {
        match self {
            Subset::DealsModified | Subset::DealsOpen => "DATE_MODIFY",
            Subset::Leads => "DATE_CREATE",
            Subset::Activities => "CREATED",
            Subset::History => "CREATED_TIME",
        }
    }

    /// The list of the part of the subset within `range`.
    pub(super) fn job_in(self, cs: &Timestamp, range: &Range, select: &[&str]) -> ListJob {
        let mut job = self.job(cs, select);
        let field = self.field();
        let filter = job.filter_mut();
        if let Some(lower) = range.lower {
            // Replaces the subset's own `>=` bound: a range's lower end is never before cs.
            filter.insert(format!(">={field}"), json!(lower.to_rfc3339()));
        }
        if let Some(upper) = range.upper {
            filter.insert(format!("<{field}"), json!(upper.to_rfc3339()));
        }
        job
    }

    /// One command that counts the part within `range` (`start=0` makes the portal answer
    /// `total`).
    pub(super) fn count_job(self, cs: &Timestamp, range: &Range) -> ListJob {
        self.job_in(cs, range, &["ID"]).single(0)
    }

    pub(super) fn in_range(self, row: &WireRow, cs: &Timestamp, range: &Range) -> bool {
        let field = self.field();
        self.contains(row, cs)
            && range.lower.is_none_or(|lower| at_or_after(row, field, &lower))
            && range
                .upper
                .is_none_or(|upper| wire::Row::new(row).text(&[field]).is_some() && !at_or_after(row, field, &upper))
    }

    /// Whether a cached row belongs to the subset, as the portal's filter decides it.
    pub(super) fn contains(self, row: &WireRow, cs: &Timestamp) -> bool {
        match self {
            Subset::DealsModified => at_or_after(row, "DATE_MODIFY", cs),
            Subset::DealsOpen => wire::Row::new(row).text(&["STAGE_SEMANTIC_ID"]).as_deref() == Some("P"),
            Subset::Leads => at_or_after(row, "DATE_CREATE", cs),
            Subset::Activities => at_or_after(row, "CREATED", cs),
            Subset::History => at_or_after(row, "CREATED_TIME", cs),
        }
    }
}

/// A part of a subset: its records whose time field is in `[lower, upper)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Range {
    pub(super) lower: Option<Timestamp>,
    pub(super) upper: Option<Timestamp>,
}

impl Range {
    pub(super) const ALL: Range = Range { lower: None, upper: None };
}

/// How wide a part of a subset is counted on its own when the subset's count differs.
pub(super) const BUCKET: chrono::Duration = chrono::Duration::days(30);

/// The subsets' time line from cs cut into [`BUCKET`]s, the first open below (open deals
/// can be older than cs) and the last open above (a portal clock ahead of ours).
pub(super) fn buckets(cs: &Timestamp, now: &Timestamp) -> Vec<Range> {
    let mut out = Vec::new();
    let mut lower = None;
    let mut edge = *cs + BUCKET;
    while edge < *now {
        out.push(Range { lower, upper: Some(edge) });
        lower = Some(edge);
        edge += BUCKET;
    }
    out.push(Range { lower, upper: None });
    out
}

/// `field >= since` as the portal's `>=` filter compares: as instants when the value is
/// one, else as text; an empty field never matches.
fn at_or_after(row: &WireRow, field: &str, since: &Timestamp) -> bool {
    let r = wire::Row::new(row);
    match r.text(&[field]) {
        None => false,
        Some(text) => match wire::parse_date(&text) {
            Some(t) => t >= *since,
            None => text.as_str() >= since.to_rfc3339().as_str(),
        },
    }
}

/// The newest value of a time field among rows; `None` when a row lacks it (then nothing
/// says what changed, and the subset is fetched in full).
pub(super) fn newest(rows: &BTreeMap<Id, WireRow>, field: &str) -> Option<Option<Timestamp>> {
    let mut max = None;
    for row in rows.values() {
        let t = wire::Row::new(row).date(&[field]).ok().flatten()?;
        max = max.max(Some(t));
    }
    Some(max)
}

pub(super) fn row_id(row: &WireRow) -> Option<Id> {
    wire::Row::new(row).id(&["ID", "id"]).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn deal(id: u64, modified: &str, semantic: &str) -> WireRow {
        WireRow::from_map(
            json!({"ID": id.to_string(), "DATE_MODIFY": modified, "STAGE_SEMANTIC_ID": semantic}).as_object().unwrap(),
        )
    }

    #[test]
    fn the_buckets_cut_every_cached_record_into_exactly_one_part() {
        let cs = at("2026-01-01T00:00:00+03:00");
        let now = at("2026-04-11T00:00:00+03:00");
        let ranges = buckets(&cs, &now);
        assert_eq!(ranges.len(), 4, "edges at 30, 60 and 90 days: {ranges:?}");
        assert_eq!((ranges[0].lower, ranges[3].upper), (None, None));
        assert!(ranges.windows(2).all(|w| w[0].upper == w[1].lower));
        let rows = [
            deal(1, "2025-06-01T10:00:00+03:00", "P"),
            deal(2, "2026-01-01T00:00:00+03:00", "S"),
            deal(3, "2026-01-31T00:00:00+03:00", "F"),
            // The same instant as an edge, served in another offset.
            deal(4, "2026-01-30T21:00:00+00:00", "P"),
            deal(5, "2026-05-01T00:00:00+03:00", "P"),
            deal(6, "2025-12-31T23:59:59+03:00", "S"),
        ];
        for subset in [Subset::DealsModified, Subset::DealsOpen] {
            for row in &rows {
                let parts = ranges.iter().filter(|r| subset.in_range(row, &cs, r)).count();
                assert_eq!(parts, usize::from(subset.contains(row, &cs)), "{subset:?} {row:?}");
            }
        }
        assert!(!Subset::DealsModified.contains(&rows[5], &cs) && !Subset::DealsOpen.contains(&rows[5], &cs));
    }

    #[test]
    fn every_field_the_cache_holds_is_packed_as_one_byte() {
        // `packed::KEYS` is the cache's format (append only), written out there; these are
        // the selects it serves, so a field added to one of them without a KEYS entry is
        // caught here (it would still work, only spelled out in every row).
        let selected = wire::DEAL_FIELDS.iter().chain(&LEAD_SELECT).chain(&ACTIVITY_SELECT).chain(&HISTORY_FIELDS);
        let product = ["ID", "PRODUCT_ID", "PRODUCT_NAME", "PRICE", "QUANTITY"];
        for field in selected.chain(&product) {
            assert!(super::super::super::packed::has_short_key(field), "{field} is not in packed::KEYS");
        }
    }

    #[test]
    fn a_range_job_bounds_the_subsets_own_filter() {
        let cs = at("2026-01-01T00:00:00+03:00");
        let range = Range { lower: Some(cs + BUCKET), upper: Some(cs + BUCKET * 2) };
        let job = Subset::DealsModified.count_job(&cs, &range);
        assert_eq!(job.params()["filter"][">=DATE_MODIFY"], "2026-01-31T00:00:00+03:00");
        assert_eq!(job.params()["filter"]["<DATE_MODIFY"], "2026-03-02T00:00:00+03:00");
        assert_eq!(job.params()["start"], 0);
        let open = Subset::DealsOpen.count_job(&cs, &Range { lower: None, upper: Some(cs) });
        assert_eq!(
            open.params()["filter"],
            json!({"STAGE_SEMANTIC_ID": "P", "<DATE_MODIFY": "2026-01-01T00:00:00+03:00"})
        );
    }
}
