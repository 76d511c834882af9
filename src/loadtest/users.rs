//! Virtual users of a load test: one throwaway account and one session each,
//! made through the users and sessions services before the load starts, and
//! removed with everything they made (jobs, files, activity rows, sessions,
//! cached authentications) when the test ends, however it ends; accounts a
//! crash left behind are removed at the next start-up.

use std::time::Duration;

use super::LoadTesting;
use crate::ids::{SessionId, UserId};
use crate::users::TEST_ACCOUNT_DOMAIN;

/// One virtual user: its account and its session for this test.
pub struct VirtualUser {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub token: String,
}

/// What every test account's email starts with.
pub const EMAIL_PREFIX: &str = "loadtest-";

/// The start of the emails of `test_id`'s accounts.
pub fn email_prefix(test_id: &str) -> String {
    format!("{EMAIL_PREFIX}{test_id}-")
}

/// `loadtest-<testId>-<i>@loadtest.invalid`.
pub fn email(test_id: &str, i: u32) -> String {
    format!("{}{i}{TEST_ACCOUNT_DOMAIN}", email_prefix(test_id))
}

/// The test id in a test account's email.
pub fn test_id_of(email: &str) -> Option<&str> {
    let local = email.strip_suffix(TEST_ACCOUNT_DOMAIN)?;
    let (prefixed, i) = local.rsplit_once('-')?;
    i.parse::<u32>().ok()?;
    prefixed.strip_prefix(EMAIL_PREFIX)
}

/// Creates `n` accounts and their sessions (valid for `ttl`). On failure
/// the caller still runs [`remove`]: whatever was made is found by email.
pub async fn create(
    state: &LoadTesting,
    test_id: &str,
    n: u32,
    ttl: Duration,
) -> anyhow::Result<Vec<VirtualUser>> {
    let made = futures::future::join_all((0..n).map(|i| async move {
        let user_id = state
            .users
            .create_test_account(&email(test_id, i), &format!("load test user {i}"))
            .await?;
        let (session_id, token) = crate::sessions::issue_internal(
            &state.sessions,
            &user_id,
            ttl,
            &serde_json::json!({"purpose": "loadtest", "testId": test_id, "virtualUser": i}),
        )
        .await?;
        Ok::<_, anyhow::Error>(VirtualUser {
            user_id,
            session_id,
            token,
        })
    }))
    .await;
    made.into_iter().collect()
}

/// Removes `test_id`'s accounts with their jobs, files, activity rows and
/// sessions; returns how many accounts.
pub async fn remove(state: &LoadTesting, test_id: &str) -> anyhow::Result<u64> {
    let accounts = state.users.test_accounts(&email_prefix(test_id)).await?;
    let mut removed = 0;
    for (user_id, _) in &accounts {
        remove_account(state, user_id).await?;
        removed += 1;
    }
    Ok(removed)
}

async fn remove_account(state: &LoadTesting, user_id: &UserId) -> anyhow::Result<()> {
    // Jobs first: a running one could still store a file.
    state.jobs.purge_user(user_id).await?;
    crate::files::purge_user(&state.files, user_id).await?;
    {
        let mut tx = state.db.begin_write().await?;
        crate::monitoring::db::delete_activity(&mut tx, user_id).await?;
        tx.commit().await?;
    }
    state.users.delete_test_account(user_id).await?;
    Ok(())
}

/// At start-up: removes the accounts of every test but the one running (a
/// process that stopped mid-test left them).
pub async fn remove_leftovers(state: &LoadTesting) -> anyhow::Result<u64> {
    let running = state.loadtests.current().and_then(|a| a.test_id);
    let accounts = state.users.test_accounts(EMAIL_PREFIX).await?;
    let mut removed = 0;
    for (user_id, email) in &accounts {
        if test_id_of(email).is_some_and(|t| Some(t) != running.as_deref()) {
            remove_account(state, user_id).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_name_the_test_and_the_user() {
        let id = "0192f0c4-7a1b-7c3d-8e9f-a0b1c2d3e4f5";
        assert_eq!(
            email(id, 7),
            "loadtest-0192f0c4-7a1b-7c3d-8e9f-a0b1c2d3e4f5-7@loadtest.invalid"
        );
        assert_eq!(test_id_of(&email(id, 7)), Some(id));
        assert_eq!(test_id_of("loadtest-x-y@loadtest.invalid"), None);
        assert_eq!(test_id_of("loadtest-x-1@example.com"), None);
        assert_eq!(test_id_of("someone-1@loadtest.invalid"), None);
    }
}
