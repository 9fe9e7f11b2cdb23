//! Paging through a resource one page at a time, so that a resource is never
//! held whole in memory.

use crate::Resource;
use crate::client::OrgClient;
use crate::error::ClientError;
use crate::ids::AscendId;
use crate::page::Page;
use crate::query::{Cursor, ListQuery, effective_page_size};

/// Whether a page is full, i.e. whether there may be more after it: it holds
/// as many records as were asked for, or as the server said it serves per
/// page (`meta.pagination.pageSize`) when that is fewer, so that a server
/// capping the page size below ours does not end the paging early.
fn is_full(page: &Page, asked: u32) -> bool {
    let served = page
        .reported_page_size
        .filter(|&n| n > 0)
        .map_or(asked, |n| n.min(asked));
    page.entries() >= served as usize
}

/// Keyset paging (`lastId=`): ascending ids, robust to changes while paging.
///
/// Call [`KeysetPager::next_page`] until it answers `Ok(None)`. The pager
/// ends on an empty page, or on a short page only when the end is
/// confirmed: the records this pager has delivered reach the
/// `meta.pagination.total` its first page reported (the whole filter's
/// count). Otherwise it asks again, so a gateway that serves fewer records
/// than asked without saying so cannot end the paging early with records
/// missing. An unchanged resource still costs one call (an empty page). On an error its position is
/// unchanged, so calling `next_page` again retries the same page; to resume
/// later, keep [`KeysetPager::after_id`] and pass it to
/// [`OrgClient::keyset`].
///
/// Rejected records count as delivered, and the cursor moves past the
/// largest id of the page, read or rejected ([`Page::last_id`]), so a bad
/// record never holds the paging back. A page whose records all lack a
/// numeric id cannot move the cursor: if it is short, nothing follows it
/// and the paging ends; if it is full, the paging cannot go on and the page
/// is [`ClientError::BadPayload`].
#[derive(Debug)]
pub struct KeysetPager {
    client: OrgClient,
    resource: Resource,
    query: ListQuery,
    after: Option<AscendId>,
    done: bool,
    /// The first page's `meta.pagination.total`.
    total: Option<u64>,
    /// Records delivered since this pager started.
    seen: u64,
}

impl KeysetPager {
    pub(crate) fn new(
        client: OrgClient,
        resource: Resource,
        query: ListQuery,
        after: Option<AscendId>,
    ) -> Self {
        KeysetPager {
            client,
            resource,
            query,
            after,
            done: false,
            total: None,
            seen: 0,
        }
    }

    /// The next page, or `None` once the resource is exhausted.
    ///
    /// Fails with [`ClientError::BadPayload`] when the ids are not strictly
    /// ascending after the cursor (keyset paging would skip records).
    pub async fn next_page(&mut self) -> Result<Option<Page>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let cursor = self.after.map_or(Cursor::Start, Cursor::AfterId);
        let page = self
            .client
            .fetch_page(self.resource, &self.query, &cursor)
            .await?;
        check_ascending(&page, self.after)?;
        let asked = effective_page_size(&self.query, self.client.config().page_size);
        let full = is_full(&page, asked);
        let moved = page.last_id();
        if moved.is_none() && page.entries() > 0 && full {
            return Err(ClientError::bad_payload(
                page.resource,
                &page.cursor,
                format!(
                    "a full page of {} records without one readable id: keyset paging cannot \
                     move past them",
                    page.entries()
                ),
            ));
        }
        if moved.is_some() {
            self.after = moved;
        }
        if self.seen == 0 && self.total.is_none() {
            self.total = page.total;
        }
        self.seen += page.entries() as u64;
        let confirmed_end = self.total.is_some_and(|total| self.seen >= total);
        if page.entries() == 0 || (!full && (confirmed_end || moved.is_none())) {
            self.done = true;
        }
        Ok(Some(page))
    }

    /// The id after which the next page starts (`None` before the first
    /// record): the resume point.
    pub fn after_id(&self) -> Option<AscendId> {
        self.after
    }

    /// The resource being paged.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// Whether the last page has been delivered.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// Checks that a keyset page's numeric ids (of its records read and
/// rejected, in the order sent) are strictly ascending and after the cursor.
fn check_ascending(page: &Page, after: Option<AscendId>) -> Result<(), ClientError> {
    let mut ids: Vec<(usize, AscendId)> = Vec::with_capacity(page.entries());
    let mut read = page.records.iter();
    let mut rejected = page.rejected.iter().peekable();
    for index in 0..page.entries() {
        match rejected.peek() {
            Some(r) if r.index == index => {
                if let Some(id) = r.numeric_id {
                    ids.push((index, id));
                }
                rejected.next();
            }
            _ => {
                if let Some(record) = read.next() {
                    ids.push((index, record.id));
                }
            }
        }
    }
    let mut previous = after;
    for (index, id) in ids {
        if let Some(previous) = previous
            && id <= previous
        {
            return Err(ClientError::bad_payload(
                page.resource,
                &page.cursor,
                format!(
                    "record #{index} has id {id} after id {previous}: \
                     keyset paging needs strictly ascending ids"
                ),
            ));
        }
        previous = Some(id);
    }
    Ok(())
}

/// Offset paging (`page=`, 1-based). Ends on a short page.
///
/// Same contract as [`KeysetPager`]: `Ok(None)` at the end, position
/// unchanged on an error.
#[derive(Debug)]
pub struct OffsetPager {
    client: OrgClient,
    resource: Resource,
    query: ListQuery,
    next: u32,
    done: bool,
}

impl OffsetPager {
    pub(crate) fn new(client: OrgClient, resource: Resource, query: ListQuery) -> Self {
        OffsetPager {
            client,
            resource,
            query,
            next: 1,
            done: false,
        }
    }

    /// The next page, or `None` once the resource is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let cursor = Cursor::Page(self.next);
        let page = self
            .client
            .fetch_page(self.resource, &self.query, &cursor)
            .await?;
        let asked = effective_page_size(&self.query, self.client.config().page_size);
        if !is_full(&page, asked) || page.entries() == 0 || self.next == u32::MAX {
            self.done = true;
        } else {
            self.next += 1;
        }
        Ok(Some(page))
    }

    /// The number of the page the next call fetches.
    pub fn next_page_number(&self) -> u32 {
        self.next
    }

    /// The resource being paged.
    pub fn resource(&self) -> Resource {
        self.resource
    }

    /// Whether the last page has been delivered.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(ids: &[u64], reported: Option<u32>) -> Page {
        let body = format!(
            r#"{{"data":[{}],"meta":{{"pagination":{{"pageSize":{}}}}}}}"#,
            ids.iter()
                .map(|id| format!(r#"{{"id":"{id}"}}"#))
                .collect::<Vec<_>>()
                .join(","),
            reported.map_or("null".to_string(), |n| n.to_string())
        );
        Page::parse(Resource::Patients, Cursor::Start, body.as_bytes()).expect("valid page")
    }

    #[test]
    fn fullness_uses_the_smaller_page_size() {
        assert!(is_full(&page(&[1, 2, 3], None), 3));
        assert!(!is_full(&page(&[1, 2], None), 3));
        assert!(is_full(&page(&[1, 2], Some(2)), 500), "server caps at 2");
        assert!(!is_full(&page(&[1, 2], Some(1000)), 3));
        assert!(!is_full(&page(&[1], Some(0)), 3));
        assert!(!is_full(&page(&[], None), 3));
    }

    #[test]
    fn keyset_ids_must_ascend_past_the_cursor() {
        assert!(check_ascending(&page(&[5, 6, 1000], None), Some(AscendId(4))).is_ok());
        assert!(check_ascending(&page(&[999, 1000], None), None).is_ok());
        assert!(check_ascending(&page(&[], None), Some(AscendId(4))).is_ok());
        let error = check_ascending(&page(&[4, 5], None), Some(AscendId(4)))
            .expect_err("not after the cursor");
        assert_eq!(error.class().as_str(), "bad_payload");
        let error = check_ascending(&page(&[5, 7, 6], None), None).expect_err("descending");
        assert!(
            error.to_string().contains("record #2 has id 6 after id 7"),
            "{error}"
        );
    }
}
