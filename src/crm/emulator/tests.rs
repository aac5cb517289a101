//! The emulator's own tests: its list filters, and `batch` with `$result[..]` references.

use serde_json::{Value, json};

use super::lists::{Typing, list};
use super::{EmulatorOptions, Portal, PortalData, Record};

fn rows(n: u64) -> Vec<Record> {
    (1..=n)
        .map(|i| {
            json!({"ID": i.to_string(), "TYPE_ID": (i % 4 + 1).to_string(), "DATE_CREATE": format!("2026-01-{:02}T10:00:00+03:00", i % 28 + 1), "TITLE": format!("Сделка {i}")})
                .as_object()
                .cloned()
                .unwrap()
        })
        .collect()
}

#[test]
fn filters_compare_numbers_dates_and_text() {
    let r = rows(120);
    let get = |p: Value| list(&r, &p, Typing::Legacy).unwrap();
    let d = get(json!({"filter": {">ID": "9", "<=ID": 12}}));
    assert_eq!(d.result.as_array().unwrap().len(), 3, "9 < ID <= 12 compares as numbers, not text");
    let d = get(json!({"filter": {"@TYPE_ID": {"0": "2", "1": "4"}}}));
    assert_eq!(d.total, Some(60));
    assert_eq!(d.next, Some(50));
    let d = get(json!({"filter": {">=DATE_CREATE": "2026-01-28T09:00:00+02:00"}}));
    assert!(d.result.as_array().unwrap().iter().all(|r| r["DATE_CREATE"].as_str().unwrap().starts_with("2026-01-28")));
    let d = get(json!({"filter": {"%TITLE": "сделка 11"}, "select": ["TITLE"]}));
    assert_eq!(d.total, Some(11));
    assert_eq!(d.result[0].as_object().unwrap().len(), 2, "ID and the selected field");
    let d = get(json!({"filter": {"!@TYPE_ID": ["1", "2", "3"]}, "order": {"ID": "DESC"}, "start": "-1"}));
    assert_eq!(d.total, Some(0));
    assert_eq!(d.next, None);
    assert_eq!(d.result[0]["ID"], "119");
}

#[test]
fn batch_references_walk_pages_by_id() {
    let portal = Portal::new(PortalData { deals: rows(120), ..Default::default() }, EmulatorOptions::default());
    let cmd = json!({"a": "crm.deal.list?order[ID]=ASC&filter[%3EID]=0&start=-1",
                     "b": "crm.deal.list?order[ID]=ASC&filter[%3EID]=%24result%5Ba%5D%5B49%5D%5BID%5D&start=-1",
                     "c": "crm.deal.list?order[ID]=ASC&filter[>ID]=$result[b][49][ID]&start=-1",
                     "d": "no.such.method"});
    let (done, _) = portal.call("t", "batch", &json!({"halt": 0, "cmd": cmd}), true).unwrap();
    let r = &done.result["result"];
    assert_eq!(r["b"][0]["ID"], "51");
    assert_eq!(r["c"].as_array().unwrap().len(), 20);
    assert_eq!(done.result["result_error"]["d"]["error"], "ERROR_METHOD_NOT_FOUND");
    assert_eq!(done.result["result_next"], json!([]), "an empty PHP map is []");
}
