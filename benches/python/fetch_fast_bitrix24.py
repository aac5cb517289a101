"""fast_bitrix24 (PyPI) fetching what salespulse fetches, from the same emulated portal.

Usage: fetch_fast_bitrix24.py WEBHOOK_URL SINCE PERIOD_START UNTIL

The same lists with the same filters and fields as salespulse's client (users, departments,
pipelines, currencies, sources, the stages of each pipeline, deals modified since SINCE,
open deals, leads, outgoing calls and e-mails, stage history), then the product rows of the
deals won in [PERIOD_START, UNTIL) (docs/kpi.md's won time: the latest entry into a success stage
in the fetched history, else MOVED_TIME, else CLOSEDATE) with get_by_ID, all with the library's defaults (2 requests/s after a pool of 50,
batches of 50). The webhook is plain http on 127.0.0.1: the library accepts any URL with a
scheme, host and path, and its `ssl` flag only matters for https, so nothing is changed.
The last line printed is a JSON object; the Rust bench reads it.
"""

import asyncio
import importlib.metadata
import json
import sys
import time
import warnings
from datetime import datetime

from fast_bitrix24 import BitrixAsync

DEAL_FIELDS = ["ID", "TITLE", "CATEGORY_ID", "STAGE_ID", "STAGE_SEMANTIC_ID", "CURRENCY_ID", "OPPORTUNITY", "LEAD_ID",
               "ASSIGNED_BY_ID", "DATE_CREATE", "DATE_MODIFY", "MOVED_TIME", "CLOSEDATE", "IS_RECURRING",
               "IS_RETURN_CUSTOMER", "SOURCE_ID", "UF_CRM_CSAT"]


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


async def fetch(b: BitrixAsync, since: str, period_start: datetime, until: datetime) -> dict:
    users = await b.get_all("user.get")
    departments = await b.get_all("department.get")
    categories = await b.get_all("crm.category.list", {"entityTypeId": 2})
    currencies = await b.get_all("crm.currency.list")
    sources = await b.get_all("crm.status.list", {"filter": {"ENTITY_ID": "SOURCE"}})
    if isinstance(categories, dict):
        categories = categories.get("categories", [])
    stages = []
    for c in categories:
        entity = "DEAL_STAGE" if int(c["id"]) == 0 else f"DEAL_STAGE_{c['id']}"
        stages += await b.get_all("crm.status.list", {"filter": {"ENTITY_ID": entity}})
    modified = await b.get_all("crm.deal.list", {"filter": {">=DATE_MODIFY": since}, "select": DEAL_FIELDS})
    open_deals = await b.get_all("crm.deal.list", {"filter": {"STAGE_SEMANTIC_ID": "P"}, "select": DEAL_FIELDS})
    leads = await b.get_all("crm.lead.list", {"filter": {">=DATE_CREATE": since},
                                              "select": ["ID", "ASSIGNED_BY_ID", "DATE_CREATE", "STATUS_SEMANTIC_ID",
                                                         "SOURCE_ID"]})
    activities = await b.get_all("crm.activity.list", {
        "filter": {">=CREATED": since, "@TYPE_ID": [2, 4], "DIRECTION": 2},
        "select": ["ID", "RESPONSIBLE_ID", "TYPE_ID", "DIRECTION", "COMPLETED", "CREATED"]})
    history = await b.get_all("crm.stagehistory.list", {
        "entityTypeId": 2, "filter": {">=CREATED_TIME": since},
        "select": ["ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID"]})
    if isinstance(history, dict):
        history = history.get("items", [])
    deals = {d["ID"]: d for d in modified + open_deals}
    won_entry = {}
    for h in history:
        if h.get("STAGE_SEMANTIC_ID") == "S":
            key = (parse(h["CREATED_TIME"]), int(h["ID"]))
            won_entry[str(h["OWNER_ID"])] = max(won_entry.get(str(h["OWNER_ID"]), key), key)

    def won_at(d):
        entry = won_entry.get(str(d["ID"]))
        if entry:
            return entry[0]
        stamp = d.get("MOVED_TIME") or d.get("CLOSEDATE")
        return parse(stamp) if stamp else None

    won = [int(i) for i, d in deals.items() if d.get("STAGE_SEMANTIC_ID") == "S" and d.get("IS_RECURRING") != "Y"
           and (t := won_at(d)) is not None and period_start <= t < until]
    rows = await b.get_by_ID("crm.deal.productrows.get", won, ID_field_name="id") if won else {}
    return {
        "users": len(users), "departments": len(departments), "stages": len(stages), "sources": len(sources),
        "currencies": len(currencies), "deals": len(deals), "leads": len(leads), "activities": len(activities),
        "history": len(history), "product_rows": sum(len(r) for r in rows.values() if isinstance(r, list)),
    }


def main() -> None:
    url, since, period_start, until = sys.argv[1], sys.argv[2], parse(sys.argv[3]), parse(sys.argv[4])
    warnings.simplefilter("ignore")
    b = BitrixAsync(url, verbose=False)
    t = time.perf_counter()
    counts = asyncio.run(fetch(b, since, period_start, until))
    took = time.perf_counter() - t
    counts.update({"version": importlib.metadata.version("fast_bitrix24"), "fetch_s": took})
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
