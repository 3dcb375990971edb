//! The keyspace on PostgreSQL: one table of `(tree, key, value)` rows,
//! ordered by the byte order of `key` (`bytea` compares bytewise, as sled
//! does), compare-and-swap as conditional statements, batches as
//! transactions.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;

use postgres::types::{ToSql, Type};
use rampart_core::store::space::{
    Batch, CasConflict, Entry, EntryIter, SpaceBackend, SpaceError, TreeBackend,
};

use crate::{Pool, off_worker};

pub(crate) fn failed(err: impl std::error::Error + Send + Sync + 'static) -> SpaceError {
    SpaceError::Backend(Box::new(err))
}

/// A pooled connection, waited for off the async workers.
fn with_client<T: Send>(
    pool: &Pool,
    work: impl FnOnce(&mut postgres::Client) -> Result<T, SpaceError> + Send,
) -> Result<T, SpaceError> {
    off_worker(|| {
        let mut client = pool.get().map_err(failed)?;
        work(&mut client)
    })
}

/// A PostgreSQL database as a keyspace.
pub(crate) struct PgSpace {
    pub(crate) pool: Pool,
}

struct PgTree {
    name: String,
    pool: Pool,
}

impl SpaceBackend for PgSpace {
    fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>, SpaceError> {
        with_client(&self.pool, |client| {
            client
                .execute(
                    "INSERT INTO rampart_trees (name) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&name],
                )
                .map_err(failed)
        })?;
        Ok(Arc::new(PgTree {
            name: name.to_owned(),
            pool: self.pool.clone(),
        }))
    }

    fn tree_names(&self) -> Result<Vec<String>, SpaceError> {
        with_client(&self.pool, |client| {
            let rows = client
                .query("SELECT name FROM rampart_trees ORDER BY name", &[])
                .map_err(failed)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn generate_id(&self) -> Result<u64, SpaceError> {
        with_client(&self.pool, |client| {
            let row = client
                .query_typed_one("SELECT nextval('rampart_ids')", &[])
                .map_err(failed)?;
            let id: i64 = row.get(0);
            Ok(id.unsigned_abs())
        })
    }

    fn flush(&self) -> Result<(), SpaceError> {
        durable(&self.pool)
    }
}

/// One commit that waits for the WAL to be on disk up to it, and so for
/// every commit before it (the pool's sessions commit asynchronously).
pub(crate) fn durable(pool: &Pool) -> Result<(), SpaceError> {
    with_client(pool, |client| {
        let mut transaction = client.transaction().map_err(failed)?;
        transaction
            .batch_execute(
                "SET LOCAL synchronous_commit = on;
                 UPDATE rampart_flushes SET n = n + 1 WHERE id = 1;",
            )
            .map_err(failed)?;
        transaction.commit().map_err(failed)
    })
}

/// Rows fetched per page of a scan: small at first (most scans want the
/// first or last entry), doubling up to this.
const MAX_PAGE: i64 = 1024;

/// The `WHERE` clause of a scan between `lower` and `upper`; `params`
/// starts with the tree name and gets the bounds' keys.
fn window<'a>(
    lower: &'a Bound<Vec<u8>>,
    upper: &'a Bound<Vec<u8>>,
    params: &mut Vec<(&'a (dyn ToSql + Sync), Type)>,
) -> String {
    let mut sql = String::from("tree = $1");
    for (bound, included, excluded) in [(lower, ">=", ">"), (upper, "<=", "<")] {
        let (op, key) = match bound {
            Bound::Included(key) => (included, key),
            Bound::Excluded(key) => (excluded, key),
            Bound::Unbounded => continue,
        };
        params.push((key, Type::BYTEA));
        sql.push_str(&format!(" AND key {op} ${}", params.len()));
    }
    sql
}

/// A scan fetched page by page from either end; the two ends never fetch
/// the same row (each narrows the window the other fetches from).
struct PgRange {
    pool: Pool,
    tree: String,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    /// Fetched from the front, ascending.
    front: VecDeque<Entry>,
    /// Fetched from the back, descending.
    back: VecDeque<Entry>,
    /// Nothing is left between the bounds that is not in a buffer.
    drained: bool,
    page: i64,
}

impl PgRange {
    fn fetch(&mut self, descending: bool) -> Result<Vec<Entry>, SpaceError> {
        let (tree, lower, upper, page) = (&self.tree, &self.lower, &self.upper, self.page);
        let rows = with_client(&self.pool, |client| {
            let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![(tree, Type::TEXT)];
            let clause = window(lower, upper, &mut params);
            params.push((&page, Type::INT8));
            let sql = format!(
                "SELECT key, value FROM rampart_entries WHERE {clause} ORDER BY key {} LIMIT ${}",
                if descending { "DESC" } else { "ASC" },
                params.len()
            );
            client.query_typed(&sql, &params).map_err(failed)
        })?;
        self.page = (self.page * 4).min(MAX_PAGE);
        Ok(rows
            .iter()
            .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
            .collect())
    }

    fn fail(&mut self, err: SpaceError) -> Option<Result<Entry, SpaceError>> {
        self.drained = true;
        self.front.clear();
        self.back.clear();
        Some(Err(err))
    }
}

impl Iterator for PgRange {
    type Item = Result<Entry, SpaceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.front.pop_front() {
            return Some(Ok(entry));
        }
        if !self.drained {
            match self.fetch(false) {
                Err(err) => return self.fail(err),
                Ok(rows) if rows.is_empty() => self.drained = true,
                Ok(rows) => {
                    if let Some((last, _)) = rows.last() {
                        self.lower = Bound::Excluded(last.clone());
                    }
                    self.front.extend(rows);
                    return self.front.pop_front().map(Ok);
                }
            }
        }
        self.back.pop_back().map(Ok)
    }
}

impl DoubleEndedIterator for PgRange {
    fn next_back(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.back.pop_front() {
            return Some(Ok(entry));
        }
        if !self.drained {
            match self.fetch(true) {
                Err(err) => return self.fail(err),
                Ok(rows) if rows.is_empty() => self.drained = true,
                Ok(rows) => {
                    if let Some((last, _)) = rows.last() {
                        self.upper = Bound::Excluded(last.clone());
                    }
                    self.back.extend(rows);
                    return self.back.pop_front().map(Ok);
                }
            }
        }
        self.front.pop_back().map(Ok)
    }
}

impl PgTree {
    fn client<T: Send>(
        &self,
        work: impl FnOnce(&mut postgres::Client, &str) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, SpaceError> {
        let name = self.name.as_str();
        with_client(&self.pool, |client| work(client, name).map_err(failed))
    }
}

impl TreeBackend for PgTree {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, SpaceError> {
        self.client(|client, tree| {
            Ok(client
                .query_typed_opt(
                    "SELECT value FROM rampart_entries WHERE tree = $1 AND key = $2",
                    &[(&tree, Type::TEXT), (&key, Type::BYTEA)],
                )?
                .map(|row| row.get(0)))
        })
    }

    fn insert(&self, key: &[u8], value: &[u8]) -> Result<bool, SpaceError> {
        self.client(|client, tree| {
            let row = client.query_typed_one(
                "WITH old AS (SELECT 1 FROM rampart_entries WHERE tree = $1 AND key = $2) \
                 INSERT INTO rampart_entries (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value \
                 RETURNING EXISTS (SELECT 1 FROM old)",
                &[
                    (&tree, Type::TEXT),
                    (&key, Type::BYTEA),
                    (&value, Type::BYTEA),
                ],
            )?;
            Ok(row.get(0))
        })
    }

    fn remove(&self, key: &[u8]) -> Result<bool, SpaceError> {
        self.client(|client, tree| {
            Ok(client.execute_typed(
                "DELETE FROM rampart_entries WHERE tree = $1 AND key = $2",
                &[(&tree, Type::TEXT), (&key, Type::BYTEA)],
            )? > 0)
        })
    }

    fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>, SpaceError> {
        loop {
            let swapped =
                self.client(|client, tree| {
                    Ok(match (expected, new) {
                        (None, Some(new)) => client.execute_typed(
                            "INSERT INTO rampart_entries (tree, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT DO NOTHING",
                            &[
                                (&tree, Type::TEXT),
                                (&key, Type::BYTEA),
                                (&new, Type::BYTEA),
                            ],
                        )? == 1,
                        (Some(old), Some(new)) => {
                            client.execute_typed(
                                "UPDATE rampart_entries SET value = $4 \
                             WHERE tree = $1 AND key = $2 AND value = $3",
                                &[
                                    (&tree, Type::TEXT),
                                    (&key, Type::BYTEA),
                                    (&old, Type::BYTEA),
                                    (&new, Type::BYTEA),
                                ],
                            )? == 1
                        }
                        (Some(old), None) => {
                            client.execute_typed(
                                "DELETE FROM rampart_entries \
                             WHERE tree = $1 AND key = $2 AND value = $3",
                                &[
                                    (&tree, Type::TEXT),
                                    (&key, Type::BYTEA),
                                    (&old, Type::BYTEA),
                                ],
                            )? == 1
                        }
                        (None, None) => client
                            .query_typed_opt(
                                "SELECT 1 FROM rampart_entries WHERE tree = $1 AND key = $2",
                                &[(&tree, Type::TEXT), (&key, Type::BYTEA)],
                            )?
                            .is_none(),
                    })
                })?;
            if swapped {
                return Ok(Ok(()));
            }
            let current = self.get(key)?;
            // Changed back to the expected value between the two
            // statements: the swap may still be made.
            if current.as_deref() != expected {
                return Ok(Err(CasConflict { current }));
            }
        }
    }

    fn range(&self, lower: Bound<Vec<u8>>, upper: Bound<Vec<u8>>) -> EntryIter {
        Box::new(PgRange {
            pool: self.pool.clone(),
            tree: self.name.clone(),
            lower,
            upper,
            front: VecDeque::new(),
            back: VecDeque::new(),
            drained: false,
            page: 16,
        })
    }

    fn apply_batch(&self, batch: Batch) -> Result<(), SpaceError> {
        self.client(|client, tree| {
            let mut transaction = client.transaction()?;
            let upsert = transaction.prepare(
                "INSERT INTO rampart_entries (tree, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (tree, key) DO UPDATE SET value = EXCLUDED.value",
            )?;
            let delete =
                transaction.prepare("DELETE FROM rampart_entries WHERE tree = $1 AND key = $2")?;
            for (key, value) in &batch.writes {
                match value {
                    Some(value) => transaction.execute(&upsert, &[&tree, key, value])?,
                    None => transaction.execute(&delete, &[&tree, key])?,
                };
            }
            transaction.commit()
        })
    }

    fn len(&self) -> Result<usize, SpaceError> {
        self.client(|client, tree| {
            let row = client.query_typed_one(
                "SELECT count(*) FROM rampart_entries WHERE tree = $1",
                &[(&tree, Type::TEXT)],
            )?;
            let count: i64 = row.get(0);
            Ok(usize::try_from(count).unwrap_or(usize::MAX))
        })
    }

    fn clear(&self) -> Result<(), SpaceError> {
        self.client(|client, tree| {
            client.execute("DELETE FROM rampart_entries WHERE tree = $1", &[&tree])?;
            Ok(())
        })
    }

    fn flush(&self) -> Result<(), SpaceError> {
        durable(&self.pool)
    }
}
