//! The cached rows of one portal, by entity, and what a fetch changed in them: the rows
//! the cache file holds and the snapshot is assembled from.

use std::collections::{BTreeMap, BTreeSet};

use super::super::packed::{self, PackedRow};
use super::super::paging::ListJob;
use super::super::wire::{self, WireRow};
use super::subset::{Range, SUBSETS, Subset, row_id};
use crate::domain::{Id, Timestamp};
use crate::store::cache::{CacheUpdate, CachedRows, Entity};

/// The rows of one fetch, by entity, as the cache holds them.
#[derive(Default)]
pub(super) struct Rows {
    pub(super) deals: BTreeMap<Id, WireRow>,
    pub(super) leads: BTreeMap<Id, WireRow>,
    pub(super) activities: BTreeMap<Id, WireRow>,
    pub(super) history: BTreeMap<Id, WireRow>,
    /// Product rows by deal.
    pub(super) products: BTreeMap<Id, Vec<WireRow>>,
}

impl Rows {
    /// The rows of a list entity (deals, leads, activities, stage history) by their id.
    /// Product rows are kept per deal, in `products`: there are no such rows by id, and
    /// asking for them gets an empty map.
    pub(super) fn by_id(&self, entity: Entity) -> &BTreeMap<Id, WireRow> {
        static NONE: BTreeMap<Id, WireRow> = BTreeMap::new();
        match entity {
            Entity::Deal => &self.deals,
            Entity::Lead => &self.leads,
            Entity::Activity => &self.activities,
            Entity::History => &self.history,
            Entity::ProductRows => &NONE,
        }
    }

    /// [`Rows::by_id`] to change; `None` for product rows (see [`Rows::set_products`]).
    fn by_id_mut(&mut self, entity: Entity) -> Option<&mut BTreeMap<Id, WireRow>> {
        match entity {
            Entity::Deal => Some(&mut self.deals),
            Entity::Lead => Some(&mut self.leads),
            Entity::Activity => Some(&mut self.activities),
            Entity::History => Some(&mut self.history),
            Entity::ProductRows => None,
        }
    }

    /// The rows a cache file held (`CachedPortal::rows`), unpacked and checked.
    pub(super) fn from_cache(cached: CachedRows) -> Result<Rows, String> {
        let mut rows = Rows::default();
        for (entity, by_id) in cached {
            if entity == Entity::ProductRows {
                for (id, bytes) in by_id {
                    let list = packed::unpack_list(&bytes).map_err(|e| format!("product rows of deal {id}: {e}"))?;
                    rows.products.insert(id, list);
                }
                continue;
            }
            let unpacked = by_id
                .into_iter()
                .map(|(id, bytes)| {
                    PackedRow::from_bytes(bytes)
                        .map(|row| (id, row))
                        .map_err(|e| format!("the {} row {id}: {e}", entity.as_str()))
                })
                .collect::<Result<BTreeMap<Id, WireRow>, String>>()?;
            if let Some(by_id) = rows.by_id_mut(entity) {
                *by_id = unpacked;
            }
        }
        Ok(rows)
    }

    pub(super) fn count(&self, subset: Subset, cs: &Timestamp, range: &Range) -> u64 {
        self.by_id(subset.entity()).values().filter(|r| subset.in_range(r, cs, range)).count() as u64
    }

    /// Inserts fetched rows of `entity`, keeping those that belong to the cache.
    pub(super) fn upsert(&mut self, entity: Entity, rows: Vec<WireRow>, cs: &Timestamp, changed: &mut Changes) {
        if entity == Entity::ProductRows {
            // Product rows come a deal's list at a time, through `set_products`.
            return;
        }
        for row in rows {
            let Some(id) = row_id(&row) else { continue };
            let keep = match entity {
                Entity::Deal => Subset::DealsModified.contains(&row, cs) || Subset::DealsOpen.contains(&row, cs),
                // An older lead a deal came from stays up to date too.
                Entity::Lead => Subset::Leads.contains(&row, cs) || self.leads.contains_key(&id),
                Entity::Activity => Subset::Activities.contains(&row, cs),
                Entity::History => Subset::History.contains(&row, cs),
                Entity::ProductRows => false,
            };
            if !keep {
                continue;
            }
            if entity == Entity::Deal && self.products.remove(&id).is_some() {
                // The deal changed: its product rows may have too.
                changed.deleted.insert((Entity::ProductRows, id));
            }
            if let Some(by_id) = self.by_id_mut(entity) {
                by_id.insert(id, row);
            }
            changed.upserted.insert((entity, id));
            changed.deleted.remove(&(entity, id));
        }
    }

    /// The leads of `ids` (deals' leads outside the window) to ask the portal for: those
    /// the cache lacks, or all of them when `all` (the periodic full reconcile: a deleted
    /// lead is noticed only by asking for it).
    pub(super) fn leads_to_ask(&self, ids: &[Id], all: bool) -> Vec<Id> {
        ids.iter().copied().filter(|id| all || !self.leads.contains_key(id)).collect()
    }

    /// Keeps the leads asked for by id: the rows returned, and none of those not returned
    /// (deleted on the portal).
    pub(super) fn set_asked_leads(&mut self, asked: &[Id], jobs: Vec<ListJob>, changed: &mut Changes) {
        let mut returned = BTreeSet::new();
        for row in jobs.into_iter().flat_map(ListJob::into_rows) {
            let Some(id) = row_id(&row) else { continue };
            returned.insert(id);
            self.leads.insert(id, row);
            changed.upserted.insert((Entity::Lead, id));
            changed.deleted.remove(&(Entity::Lead, id));
        }
        for id in asked.iter().filter(|id| !returned.contains(id)) {
            self.remove(Entity::Lead, *id, changed);
        }
    }

    /// The cached rows of `ids`' leads.
    pub(super) fn leads_of(&self, ids: &[Id]) -> Vec<&WireRow> {
        ids.iter().filter_map(|id| self.leads.get(id)).collect()
    }

    pub(super) fn set_products(&mut self, deal: Id, list: Vec<WireRow>, changed: &mut Changes) {
        self.products.insert(deal, list);
        changed.deleted.remove(&(Entity::ProductRows, deal));
        changed.upserted.insert((Entity::ProductRows, deal));
    }

    pub(super) fn remove(&mut self, entity: Entity, id: Id, changed: &mut Changes) {
        if self.by_id_mut(entity).and_then(|by_id| by_id.remove(&id)).is_some() {
            changed.upserted.remove(&(entity, id));
            changed.deleted.insert((entity, id));
        }
        if entity == Entity::Deal && self.products.remove(&id).is_some() {
            changed.upserted.remove(&(Entity::ProductRows, id));
            changed.deleted.insert((Entity::ProductRows, id));
        }
    }

    /// Drops what no subset from `cs` holds (after `cs` moved forward), but for the older
    /// leads that cached deals came from.
    pub(super) fn prune(&mut self, cs: &Timestamp, changed: &mut Changes) {
        let origins: BTreeSet<Id> =
            self.deals.values().filter_map(|d| wire::Row::new(d).id(&["LEAD_ID"]).ok().flatten()).collect();
        for entity in [Entity::Deal, Entity::Lead, Entity::Activity, Entity::History] {
            let gone: Vec<Id> = self
                .by_id(entity)
                .iter()
                .filter(|(id, r)| {
                    let origin = entity == Entity::Lead && origins.contains(id);
                    !origin && !SUBSETS.iter().any(|s| s.entity() == entity && s.contains(r, cs))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.remove(entity, id, changed);
            }
        }
    }

    /// The rows of the subset at or after `since`, in ID order.
    pub(super) fn select(&self, subset: Subset, since: &Timestamp) -> Vec<&WireRow> {
        self.by_id(subset.entity()).values().filter(|r| subset.contains(r, since)).collect()
    }

    /// What saving these rows writes: every row when `replace` (a rebuild), else what
    /// `changed` names. Takes the rows: they are not needed once the snapshot is assembled,
    /// and a rebuild's rows are not copied again to be written.
    pub(super) fn into_update(mut self, changed: &Changes, replace: bool) -> CacheUpdate {
        if replace {
            let mut keys = Vec::new();
            for entity in [Entity::Deal, Entity::Lead, Entity::Activity, Entity::History] {
                keys.extend(self.by_id(entity).keys().map(|id| (entity, *id)));
            }
            keys.extend(self.products.keys().map(|id| (Entity::ProductRows, *id)));
            let upserts = keys.into_iter().filter_map(|(e, id)| Some((e, id, self.take(e, id)?))).collect();
            return CacheUpdate { replace: true, upserts, deletes: Vec::new() };
        }
        CacheUpdate {
            replace: false,
            upserts: changed.upserted.iter().filter_map(|(e, id)| Some((*e, *id, self.take(*e, *id)?))).collect(),
            deletes: changed.deleted.iter().copied().collect(),
        }
    }

    /// A row (a deal's product rows) taken out, as the bytes the cache file holds.
    fn take(&mut self, entity: Entity, id: Id) -> Option<Box<[u8]>> {
        match entity {
            Entity::ProductRows => self.products.remove(&id).map(|l| packed::pack_list(&l).into_boxed_slice()),
            e => self.by_id_mut(e)?.remove(&id).map(PackedRow::into_bytes),
        }
    }
}

/// What a fetch changed in the cached rows.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) upserted: BTreeSet<(Entity, Id)>,
    pub(super) deleted: BTreeSet<(Entity, Id)>,
}
