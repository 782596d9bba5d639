//! The refresh merge: a stored token updated by a token endpoint's answer to a refresh
//! ([`Token::refreshed_with`]), by the rules of RFC 6749 sections 5.1 and 6.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::response::{secret_json, wipe};
use crate::token::Token;

impl Token {
    /// This stored token updated by a refresh: `refreshed` is what the token endpoint
    /// answered to a refresh (or any re-issue) of the same grant.
    ///
    /// The rules (RFC 6749 sections 5.1 and 6), which none of the seed SDKs gets all right:
    /// - no refresh token in the answer: the stored refresh token is kept (the server did not
    ///   rotate it);
    /// - no scope in the answer: the stored scopes are kept (the grant's scope is unchanged);
    /// - no identity or resource server: the stored ones are kept;
    /// - extra fields: the stored ones are kept, and those in the answer replace them
    ///   field by field;
    /// - the access token, token type and expiry are the answer's.
    ///
    /// If the answer names *another* identity than the stored token, it is not a refresh of
    /// this grant: it is returned unchanged, and nothing of the stored token carries over
    /// (an [`UnchangingIdentity`](crate::store::UnchangingIdentity) validator refuses to store it).
    ///
    /// ```
    /// use tokenvault::Token;
    /// use tokenvault::secrecy::ExposeSecret;
    ///
    /// let stored = Token::new("old-at".into())
    ///     .with_refresh_token("rt".into())
    ///     .with_scopes(["openid", "email"])
    ///     .with_identity("user-1");
    /// let answer = Token::new("new-at".into()); // no refresh token, no scope, no identity
    /// let merged = stored.refreshed_with(answer);
    /// assert_eq!(merged.access_token().expose_secret(), "new-at");
    /// assert_eq!(merged.refresh_token().unwrap().expose_secret(), "rt");
    /// assert_eq!(merged.scopes(), ["openid", "email"]);
    /// assert_eq!(merged.identity(), Some("user-1"));
    /// ```
    #[must_use]
    pub fn refreshed_with(&self, refreshed: Token) -> Token {
        if let (Some(old), Some(new)) = (self.identity(), refreshed.identity()) {
            if old != new {
                return refreshed;
            }
        }
        let mut merged = refreshed;
        if merged.refresh_token().is_none() {
            if let Some(rt) = self.refresh_token() {
                merged = merged.with_refresh_token(rt.clone());
            }
        }
        if merged.scopes().is_empty() && !self.scopes().is_empty() {
            merged = merged.with_scopes(self.scopes().iter().cloned());
        }
        if merged.identity().is_none() {
            if let Some(id) = self.identity() {
                merged = merged.with_identity(id);
            }
        }
        if merged.resource_server().is_none() {
            if let Some(rs) = self.resource_server() {
                merged = merged.with_resource_server(rs);
            }
        }
        match (self.extra_json(), merged.extra_json().cloned()) {
            (Some(old), None) => merged = merged.with_extra_json(old.clone()),
            (Some(old), Some(new)) => {
                if let Some(both) = merge_extra(old, &new) {
                    merged = merged.with_extra_json(both);
                }
            }
            _ => {}
        }
        merged
    }
}

/// The stored extra fields overlaid with the new ones, if both are JSON objects.
fn merge_extra(old: &SecretString, new: &SecretString) -> Option<SecretString> {
    let (Ok(mut old_v), Ok(mut new_v)) = (
        serde_json::from_str::<Value>(old.expose_secret()),
        serde_json::from_str::<Value>(new.expose_secret()),
    ) else {
        return None;
    };
    let result = match (&mut old_v, &mut new_v) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in std::mem::take(n) {
                if let Some(mut replaced) = o.insert(k, v) {
                    wipe(&mut replaced);
                }
            }
            let hint = old.expose_secret().len() + new.expose_secret().len();
            secret_json(o, hint).ok()
        }
        _ => None,
    };
    wipe(&mut old_v);
    wipe(&mut new_v);
    result
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::response::TokenResponse;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn kept_numbers_survive_repeated_merges() {
        // Found by fuzzing: without correctly rounded float parsing, a large float in an
        // extra field drifted by one unit in the last place at each re-encoding.
        let body = br#"{"access_token":"a","token_type":"B","x":8111111111111111111111116666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666666611111111111111111111111111111111111111111111111111111111111111111111116400,"y":0.1,"z":18446744073709551615}"#;
        let t = TokenResponse::from_json(body, at(0))
            .unwrap()
            .into_tokens()
            .remove(0);
        let mut merged = t.clone();
        for _ in 0..3 {
            merged = merged.refreshed_with(merged.clone());
            assert!(
                merged.same_as(&t),
                "{}",
                merged.extra_json().unwrap().expose_secret()
            );
        }
    }

    #[test]
    fn refresh_merge_rules() {
        let stored = Token::new("old".into())
            .with_refresh_token("rt-old".into())
            .with_scopes(["a", "b"])
            .with_identity("u1")
            .with_resource_server("rs")
            .with_extra_json(r#"{"id_token":"i1","keep":1}"#.into());
        let answer = Token::new("new".into())
            .with_expires_at(at(50))
            .with_extra_json(r#"{"id_token":"i2"}"#.into());
        let m = stored.refreshed_with(answer);
        assert_eq!(m.access_token().expose_secret(), "new");
        assert_eq!(m.refresh_token().unwrap().expose_secret(), "rt-old");
        assert_eq!(m.scopes(), ["a", "b"]);
        assert_eq!(m.identity(), Some("u1"));
        assert_eq!(m.resource_server(), Some("rs"));
        assert_eq!(m.expires_at(), Some(at(50)));
        let extra: Value = serde_json::from_str(m.extra_json().unwrap().expose_secret()).unwrap();
        assert_eq!(extra, serde_json::json!({"id_token":"i2","keep":1}));

        // A rotated refresh token and a narrowed scope win.
        let m = stored.refreshed_with(
            Token::new("n".into())
                .with_refresh_token("rt-new".into())
                .with_scopes(["a"]),
        );
        assert_eq!(m.refresh_token().unwrap().expose_secret(), "rt-new");
        assert_eq!(m.scopes(), ["a"]);

        // Another identity: nothing carries over.
        let other = Token::new("x".into()).with_identity("u2");
        let m = stored.refreshed_with(other);
        assert!(m.refresh_token().is_none());
        assert!(m.scopes().is_empty());
        assert_eq!(m.identity(), Some("u2"));
    }
}
