//! What the authorizer checks and trims in a refresher's answer before storing it: that it is a
//! refresh of the stored grant (same identity, same resource server), and that it fits in a
//! record (an oversized answer is stored without the extra fields that do not fit).

use crate::record::{Record, MAX_RECORD_LEN};
use crate::response::{secret_json, wipe, Counter};
use crate::token::Token;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

/// Why `answer` is not a refresh of the grant `stored`: it names another identity, or another
/// resource server, than the stored token (both named). `None`: it may be a refresh of it.
///
/// [`Token::refreshed_with`] carries nothing over to an answer of another identity; the
/// authorizer goes further and never stores or serves it (a refresher bug, or a hostile server
/// swapping users, must not replace one user's token with another's). The HTTP refresher
/// refuses an answer for another resource server in the same way.
pub(super) fn foreign(stored: &Token, answer: &Token) -> Option<&'static str> {
    let differs = |a: Option<&str>, b: Option<&str>| matches!((a, b), (Some(a), Some(b)) if a != b);
    if differs(stored.identity(), answer.identity()) {
        Some("the refresher answered with a token for another identity than the stored one")
    } else if differs(stored.resource_server(), answer.resource_server()) {
        Some("the refresher answered with a token for another resource server than the stored one")
    } else {
        None
    }
}

/// A refreshed token as it can be stored.
pub(super) struct Fitted {
    /// The token to store and serve: the answer, or the answer without the extra fields that
    /// do not fit in a record.
    pub(super) token: Token,
    /// Whether it fits in a record; `false` when it does not even without its extra fields
    /// (then `token` is the whole answer, to be kept in memory).
    pub(super) fits: bool,
    /// How many extra fields were left out (all of them, counted as one, when the extra
    /// fields are not a JSON object).
    pub(super) dropped: usize,
}

/// Room kept free for the record framing when choosing which extra fields to keep.
const SLACK: usize = 64;

/// Fits `token` in a record under `key`: whole if it fits; otherwise without its largest extra
/// fields (an `id_token` of 70 KB, say), keeping the smaller ones that fit; otherwise without
/// any extra fields. A token that does not fit even then is returned whole, without a body.
pub(super) fn fit(token: Token, key: &str) -> Fitted {
    let whole = token.encoded_len(key);
    let Some(extra) = token.extra_json().filter(|_| whole.is_err()).cloned() else {
        return Fitted {
            fits: whole.is_ok(),
            token,
            dropped: 0,
        };
    };
    let bare = without_extra(&token);
    let Ok(bare_len) = bare.encoded_len(key) else {
        return Fitted {
            token,
            fits: false,
            dropped: 0,
        };
    };
    // Room for the extra fields' JSON text: what the bare record leaves, less its length
    // prefix and option tag (8 + 1 bytes) and some slack.
    let room = MAX_RECORD_LEN.saturating_sub(bare_len + 9 + SLACK);
    if let Some((kept, dropped)) = keep_within(&extra, room) {
        let slim = bare.clone().with_extra_json(kept);
        if slim.encoded_len(key).is_ok() {
            return Fitted {
                token: slim,
                fits: true,
                dropped,
            };
        }
    }
    let dropped = count_fields(&extra).max(1);
    Fitted {
        token: bare,
        fits: true,
        dropped,
    }
}

/// `token` without its extra fields.
fn without_extra(token: &Token) -> Token {
    let mut parts = token.parts();
    parts.extra_json = None;
    Token::from_parts(&parts)
}

/// The fields of the JSON object `extra` whose text fits in `room` bytes, the smallest first,
/// and how many were left out. `None` when `extra` is not an object, or when no field is kept
/// or none left out.
fn keep_within(extra: &SecretString, room: usize) -> Option<(SecretString, usize)> {
    let Ok(mut value) = serde_json::from_str::<Value>(extra.expose_secret()) else {
        return None;
    };
    let Value::Object(map) = &mut value else {
        wipe(&mut value);
        return None;
    };
    let mut fields: Vec<(usize, String, Value)> = std::mem::take(map)
        .into_iter()
        .map(|(name, v)| (json_len(&name) + json_len(&v) + 2, name, v))
        .collect();
    fields.sort_by_key(|(len, _, _)| *len);
    let total = fields.len();
    let mut kept = Map::new();
    let mut used = 2; // the braces
    for (len, name, mut v) in fields {
        if used + len <= room {
            used += len;
            kept.insert(name, v);
        } else {
            wipe(&mut v);
        }
    }
    let dropped = total - kept.len();
    let result = if kept.is_empty() || dropped == 0 {
        None
    } else {
        secret_json(&kept, used).ok().map(|json| (json, dropped))
    };
    kept.values_mut().for_each(wipe);
    result
}

/// How many fields the JSON object `extra` has (0 when it is not one).
fn count_fields(extra: &SecretString) -> usize {
    match serde_json::from_str::<Value>(extra.expose_secret()) {
        Ok(mut value) => {
            let n = value.as_object().map_or(0, Map::len);
            wipe(&mut value);
            n
        }
        Err(_) => 0,
    }
}

/// The length of `value` as JSON text, counted without writing it anywhere.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX / 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_extra(id_token_len: usize) -> SecretString {
        format!(
            r#"{{"id_token":"{}","scope_hint":"small","n":7}}"#,
            "i".repeat(id_token_len)
        )
        .into()
    }

    #[test]
    fn a_token_that_fits_is_kept_whole() {
        let token = Token::new("at".into()).with_extra_json(big_extra(100));
        let fitted = fit(token.clone(), "k");
        assert!(fitted.fits);
        assert_eq!(fitted.dropped, 0);
        assert!(fitted.token.same_as(&token));
    }

    #[test]
    fn the_largest_extra_fields_are_left_out_the_small_ones_kept() {
        let token = Token::new("at".into())
            .with_refresh_token("rt".into())
            .with_extra_json(big_extra(70_000));
        let fitted = fit(token, "k");
        assert!(fitted.fits);
        assert_eq!(fitted.dropped, 1);
        let extra = fitted.token.extra_json().unwrap().expose_secret();
        assert!(!extra.contains("id_token"), "{extra}");
        assert!(
            extra.contains("scope_hint") && extra.contains("\"n\":7"),
            "{extra}"
        );
        assert_eq!(fitted.token.refresh_token().unwrap().expose_secret(), "rt");
    }

    #[test]
    fn extra_fields_that_are_not_an_object_are_left_out_whole() {
        let token = Token::new("at".into()).with_extra_json("x".repeat(70_000).into());
        let fitted = fit(token, "k");
        assert!(fitted.fits);
        assert!(fitted.token.extra_json().is_none());
        assert_eq!(fitted.dropped, 1);
    }

    #[test]
    fn a_token_too_large_without_extra_fields_does_not_fit() {
        let token = Token::new("a".repeat(70_000).into()).with_extra_json(big_extra(10));
        let fitted = fit(token, "k");
        assert!(!fitted.fits);
        assert!(
            fitted.token.extra_json().is_some(),
            "kept whole, for memory"
        );
    }

    #[test]
    fn foreign_answers_are_recognised() {
        let alice = Token::new("a".into())
            .with_identity("alice")
            .with_resource_server("rs");
        assert!(foreign(&alice, &Token::new("b".into())).is_none());
        assert!(foreign(&alice, &Token::new("b".into()).with_identity("alice")).is_none());
        assert!(foreign(&alice, &Token::new("b".into()).with_identity("bob")).is_some());
        assert!(foreign(
            &alice,
            &Token::new("b".into()).with_resource_server("other")
        )
        .is_some());
        assert!(foreign(&Token::new("a".into()), &alice).is_none());
    }
}
