//! The Sharetribe Flex integration SDK's file store: one bare OAuth token response.

use std::time::SystemTime;

use super::error::ImportErrorKind;
use super::records::Parsed;
use crate::response::TokenResponse;
use crate::token_error::TokenError;

/// Reads a Sharetribe token file last modified at `modified`, as one token under
/// `namespace` and `key`. The file's relative `expires_in` counts from `modified`: the SDK
/// writes the file when it receives the token.
pub(super) fn parse_file(
    bytes: &[u8],
    modified: SystemTime,
    namespace: &str,
    key: &str,
) -> Result<Parsed, ImportErrorKind> {
    let response = TokenResponse::from_json(bytes, modified).map_err(|e| match e {
        TokenError::InvalidResponse { reason } => ImportErrorKind::Malformed {
            reason: format!("not a token response: {reason}"),
        },
        _ => ImportErrorKind::Malformed {
            reason: "not a token response".to_owned(),
        },
    })?;
    let mut tokens = response.into_tokens();
    let token = match (tokens.pop(), tokens.is_empty()) {
        (Some(token), true) => token,
        _ => {
            return Err(ImportErrorKind::Malformed {
                reason: "the file holds several tokens; a Sharetribe token file holds one"
                    .to_owned(),
            })
        }
    };
    let mut parsed = Parsed::default();
    parsed.push(namespace, key, token)?;
    Ok(parsed)
}
