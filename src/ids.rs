//! Identifiers that could be mixed up, one type each: a job id cannot be
//! passed where a user id is expected. Each is the stored TEXT (a UUID v7 for
//! the ones this service creates) and the same JSON string as before.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
            Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new time-ordered id ([`crate::db::new_id`]).
            pub fn generate() -> Self {
                Self(crate::db::new_id())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        /// Any text: ids arrive in paths and bodies, and an unknown one is a
        /// 404 where it is looked up, not a parse error.
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Lets maps keyed by the id be searched with a `&str`.
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// An account (`users.id`).
    UserId
);
id_type!(
    /// A durable job (`jobs.id`).
    JobId
);
id_type!(
    /// A stored file (`files.id`).
    FileId
);
id_type!(
    /// A login session (`sessions.id`), not its token.
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_bare_string() {
        let id = UserId::from("0193a0e2-7c1d-7000-8000-000000000001");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"0193a0e2-7c1d-7000-8000-000000000001\"");
        assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
    }

    #[test]
    fn maps_keyed_by_id_are_searched_by_text() {
        let mut m = std::collections::HashMap::new();
        m.insert(FileId::from("f1"), 1);
        assert_eq!(m.get("f1"), Some(&1));
    }
}
