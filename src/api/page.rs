//! AIP-158 pagination: page sizes and opaque page tokens, and the paging of
//! risk listings, whose every page is of the answer the first page read.
//!
//! A token carries the listing it belongs to (a fingerprint of its filters)
//! and where the previous page ended, so that it is refused when reused with
//! other filters. Tokens are opaque to clients but not secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use prost::Message;

use tonic::Status;

use crate::domain::date::Date;
use crate::domain::risk::Query;
use crate::domain::Error;
use crate::view::View;

/// Page size when the client asks for 0.
pub(super) const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page served; larger requests are served this many.
pub(super) const MAX_PAGE_SIZE: usize = 1000;

/// The token layout this release writes.
const TOKEN_VERSION: u32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
struct PageToken {
    #[prost(uint32, tag = "1")]
    version: u32,
    /// Which listing, with which filters, the token continues.
    #[prost(string, tag = "2")]
    listing: String,
    /// The id of the last record of the previous page.
    #[prost(string, tag = "3")]
    after: String,
    /// The store revision a pinned listing reads (0 when not pinned).
    #[prost(uint64, tag = "4")]
    revision: u64,
    /// The store epoch of that revision: after the store was opened again
    /// (see `View::epoch`), a revision number may name another network.
    #[prost(uint64, tag = "5")]
    epoch: u64,
    /// The date a pinned risk listing answers for, when its first page
    /// asked for "today": later pages answer for the same day, even once
    /// midnight has passed.
    #[prost(string, tag = "6")]
    as_of: String,
}

/// What a pinned listing's pages keep: the answer they all come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PagePin {
    pub epoch: u64,
    pub revision: u64,
    /// `YYYY-MM-DD`, or empty when the listing has no date.
    pub as_of: String,
}

/// The page size to serve for a requested `page_size`.
pub(super) fn page_size(requested: i32) -> Result<usize, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid_argument(
            "page_size",
            format!("must not be negative, is {n}"),
        )),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

/// Where a page starts: after which id (or position), and what it is pinned to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Cursor {
    pub after: Option<String>,
    pub pin: PagePin,
}

/// Reads `token` for the listing `listing`; an empty token starts at the top.
pub(super) fn decode_token(token: &str, listing: &str) -> Result<Cursor, Error> {
    if token.is_empty() {
        return Ok(Cursor::default());
    }
    let invalid = |why: &str| Error::invalid_argument("page_token", why.to_string());
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid("is not a page token this service issued"))?;
    let decoded = PageToken::decode(bytes.as_slice())
        .map_err(|_| invalid("is not a page token this service issued"))?;
    if decoded.version != TOKEN_VERSION || decoded.after.is_empty() {
        return Err(invalid("is not a page token this service issued"));
    }
    if decoded.listing != listing {
        return Err(invalid(
            "belongs to a listing with other filters; send the same filters as the first page, or start over without a token",
        ));
    }
    Ok(Cursor {
        after: Some(decoded.after),
        pin: PagePin {
            epoch: decoded.epoch,
            revision: decoded.revision,
            as_of: decoded.as_of,
        },
    })
}

/// A token that continues `listing` after `after`, pinned to `pin`.
pub(super) fn encode_token(listing: &str, after: &str, pin: &PagePin) -> String {
    let token = PageToken {
        version: TOKEN_VERSION,
        listing: listing.to_string(),
        after: after.to_string(),
        revision: pin.revision,
        epoch: pin.epoch,
        as_of: pin.as_of.clone(),
    };
    URL_SAFE_NO_PAD.encode(token.encode_to_vec())
}

/// Where a pinned listing's page starts, and the query its answer is for.
pub(super) struct Paging {
    listing: String,
    offset: usize,
    size: usize,
    /// Set for a later page: the answer its first page read.
    pin: Option<PagePin>,
}

fn forged_token() -> Error {
    Error::invalid_argument("page_token", "is not a page token this service issued")
}

impl Paging {
    /// Reads `page_size` and `page_token` of `listing`; a later page
    /// answers for the day its first page answered for.
    pub(super) fn read(
        listing: String,
        page_size_asked: i32,
        token: &str,
        query: &mut Query,
    ) -> Result<Paging, Status> {
        let size = page_size(page_size_asked)?;
        let cursor = decode_token(token, &listing)?;
        let offset = match &cursor.after {
            Some(after) => after.parse::<usize>().map_err(|_| forged_token())?,
            None => 0,
        };
        let pin = match cursor.after {
            Some(_) => {
                query.as_of =
                    crate::domain::date::parse_date(&cursor.pin.as_of).ok_or_else(forged_token)?;
                Some(cursor.pin)
            }
            None => None,
        };
        Ok(Paging {
            listing,
            offset,
            size,
            pin,
        })
    }

    /// Whether a later page reads another revision than `view`'s.
    pub(super) fn pinned_elsewhere(&self, view: &View) -> Option<&PagePin> {
        self.pin
            .as_ref()
            .filter(|pin| (pin.epoch, pin.revision) != (view.epoch, view.revision))
    }

    /// The positions of this page in a listing of `total`, and the token
    /// of the next page of the answer (`epoch`, `revision`, `as_of`).
    pub(super) fn page(
        &self,
        total: usize,
        epoch: u64,
        revision: u64,
        as_of: Date,
    ) -> Result<(std::ops::Range<usize>, String), Status> {
        // Tokens are only issued for a position inside their answer.
        if self.offset > total {
            return Err(forged_token().into());
        }
        let end = self.offset.saturating_add(self.size).min(total);
        let next = if end < total {
            let pin = PagePin {
                epoch,
                revision,
                as_of: crate::domain::date::format_date(as_of),
            };
            encode_token(&self.listing, &end.to_string(), &pin)
        } else {
            String::new()
        };
        Ok((self.offset..end, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_follow_aip_158() {
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(5000).unwrap(), 1000);
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn tokens_round_trip_and_refuse_other_listings_and_garbage() {
        let token = encode_token("licenses?status=2", "LIC-9", &PagePin::default());
        assert_eq!(
            decode_token(&token, "licenses?status=2").unwrap(),
            Cursor {
                after: Some("LIC-9".into()),
                pin: PagePin::default(),
            }
        );
        let pin = PagePin {
            epoch: 2,
            revision: 7,
            as_of: "2025-06-02".into(),
        };
        let pinned = encode_token("at-risk", "50", &pin);
        assert_eq!(decode_token(&pinned, "at-risk").unwrap().pin, pin);
        assert!(decode_token(&token, "licenses?status=1").is_err());
        for garbage in ["%%%", "AAAA", "bm90IGEgdG9rZW4", &token[1..]] {
            assert!(
                decode_token(garbage, "licenses?status=2").is_err(),
                "{garbage:?}"
            );
        }
        assert_eq!(decode_token("", "x").unwrap(), Cursor::default());
    }
}
