//! Daily token budgets (`AI_DAILY_TOKEN_BUDGET` per user,
//! `AI_GLOBAL_DAILY_TOKEN_BUDGET` for everyone) enforced by reservation:
//! before each upstream call the request's input estimate plus its
//! `maxTokens` is reserved, atomically with the check; after the call the
//! real usage is settled and the rest released (a call that fails or is
//! abandoned releases what it did not use). A call is admitted while the
//! tokens used plus those reserved are below the budget, so parallel or
//! queued calls together overshoot it by at most one call's reservation.
//!
//! The ledger is in memory, under one mutex, keyed by user and UTC day, and
//! seeded from the `ai_calls` rows of the day the first time a user (or the
//! global account) is seen that day. Why memory and not a SQLite row per
//! reservation: a reservation lives only as long as its call, which dies
//! with the process, so it needs no durability; the settled usage is durable
//! already as the call's `ai_calls` row; and a check plus a reservation
//! under a mutex costs microseconds where a write transaction would queue
//! behind the single writer twice per call. The service runs as one process
//! per database (the data directory lock), so one mutex sees every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::db;
use super::model::ChatParams;
use crate::db::Db;
use crate::ids::UserId;
use crate::time::Timestamp;

/// Tokens used and reserved by one account on one day.
#[derive(Debug, Default, Clone, Copy)]
struct Account {
    used: u64,
    reserved: u64,
}

#[derive(Debug, Default)]
struct Ledger {
    day: Option<NaiveDate>,
    users: HashMap<String, Account>,
    global: Option<Account>,
}

impl Ledger {
    /// Starts a new day's ledger when the day changed.
    fn roll(&mut self, day: NaiveDate) {
        if self.day != Some(day) {
            *self = Ledger {
                day: Some(day),
                ..Ledger::default()
            };
        }
    }
}

/// Which budget is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    Global,
}

/// A spent budget: which, its size, and how long until it renews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    pub scope: Scope,
    pub budget: u64,
    pub retry_after: Duration,
}

impl Exhausted {
    pub fn message(&self) -> String {
        match self.scope {
            Scope::User => format!(
                "your daily AI token budget ({} tokens) is spent; it renews at 00:00 UTC",
                self.budget
            ),
            Scope::Global => format!(
                "the service's daily AI token budget ({} tokens) is spent; it renews at 00:00 UTC",
                self.budget
            ),
        }
    }
}

/// The budgets and their ledger.
#[derive(Debug)]
pub struct Budgets {
    /// Per user and day; 0: no per-user budget.
    per_user: u64,
    global: Option<u64>,
    ledger: Mutex<Ledger>,
}

/// Tokens held for one call until it is settled; dropping it unsettled
/// releases them all.
#[derive(Debug)]
pub struct Reservation {
    budgets: Arc<Budgets>,
    user: Option<String>,
    day: NaiveDate,
    amount: u64,
    settled: bool,
}

impl Reservation {
    /// Records the call's real usage and releases the rest.
    pub fn settle(mut self, used: u64) {
        self.budgets
            .release(self.user.as_deref(), self.day, self.amount, used);
        self.settled = true;
    }

    pub fn amount(&self) -> u64 {
        self.amount
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budgets
                .release(self.user.as_deref(), self.day, self.amount, 0);
        }
    }
}

/// What a call may use at most: its input estimate plus `maxTokens`.
pub fn reservation_for(params: &ChatParams) -> u64 {
    estimate_input_tokens(params) + u64::from(params.max_tokens)
}

/// A generous estimate of a request's input tokens: a token per three
/// bytes of text (English averages about four characters a token), plus a
/// few per message for the roles and framing.
pub fn estimate_input_tokens(params: &ChatParams) -> u64 {
    let bytes = params.system.as_deref().map_or(0, str::len)
        + params
            .messages
            .iter()
            .map(|m| m.content.len())
            .sum::<usize>();
    (bytes as u64).div_ceil(3) + 4 * params.messages.len() as u64 + 8
}

fn midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc())
        .unwrap_or(now)
}

fn until_next_midnight(now: DateTime<Utc>) -> Duration {
    let next = midnight(now) + chrono::Duration::days(1);
    (next - now).to_std().unwrap_or(Duration::from_secs(1))
}

impl Budgets {
    pub fn new(per_user: u64, global: Option<u64>) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            global,
            ledger: Mutex::new(Ledger::default()),
        })
    }

    fn limits_user(&self, user: Option<&str>) -> bool {
        self.per_user > 0 && user.is_some()
    }

    /// Loads today's usage of `user` (and of everyone, with a global budget)
    /// from the database unless the ledger has it already.
    async fn seed(&self, db: &Db, user: Option<&str>, now: DateTime<Utc>) -> sqlx::Result<()> {
        let day = now.date_naive();
        let (need_user, need_global) = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.roll(day);
            (
                user.filter(|u| self.limits_user(Some(u)) && !ledger.users.contains_key(*u)),
                self.global.is_some() && ledger.global.is_none(),
            )
        };
        if need_user.is_none() && !need_global {
            return Ok(());
        }
        let since = Timestamp::from_datetime(midnight(now));
        let user_used = match need_user {
            Some(u) => Some(db::tokens_since(&db.reader, &UserId::from(u), since).await?),
            None => None,
        };
        let global_used = if need_global {
            Some(db::all_tokens_since(&db.reader, since).await?)
        } else {
            None
        };
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.day != Some(day) {
            // The day turned while we read: the next call seeds again.
            return Ok(());
        }
        // Another call may have seeded meanwhile: its entry (with its
        // reservations) wins.
        if let (Some(u), Some(used)) = (need_user, user_used) {
            ledger.users.entry(u.to_string()).or_insert(Account {
                used: u64::try_from(used).unwrap_or(0),
                reserved: 0,
            });
        }
        if let Some(used) = global_used
            && ledger.global.is_none()
        {
            ledger.global = Some(Account {
                used: u64::try_from(used).unwrap_or(0),
                reserved: 0,
            });
        }
        Ok(())
    }

    /// Whether a call by `user` would be admitted now (nothing reserved).
    pub async fn check(
        &self,
        db: &Db,
        user: Option<&UserId>,
    ) -> sqlx::Result<Result<(), Exhausted>> {
        let user = user.map(UserId::as_str);
        let now = Utc::now();
        self.seed(db, user, now).await?;
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.admissible(&ledger, user, now))
    }

    /// Reserves `amount` tokens for one call by `user`, or says which
    /// budget is spent.
    pub async fn reserve(
        self: &Arc<Self>,
        db: &Db,
        user: Option<&UserId>,
        amount: u64,
    ) -> sqlx::Result<Result<Reservation, Exhausted>> {
        let user = user.map(UserId::as_str);
        let now = Utc::now();
        self.seed(db, user, now).await?;
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        ledger.roll(now.date_naive());
        if let Err(e) = self.admissible(&ledger, user, now) {
            return Ok(Err(e));
        }
        if self.limits_user(user)
            && let Some(u) = user
        {
            ledger.users.entry(u.to_string()).or_default().reserved += amount;
        }
        if self.global.is_some() {
            ledger.global.get_or_insert_default().reserved += amount;
        }
        Ok(Ok(Reservation {
            budgets: self.clone(),
            user: user.map(str::to_string),
            day: now.date_naive(),
            amount,
            settled: false,
        }))
    }

    fn admissible(
        &self,
        ledger: &Ledger,
        user: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), Exhausted> {
        let spent = |a: Option<&Account>, budget: u64| {
            a.is_some_and(|a| a.used.saturating_add(a.reserved) >= budget)
        };
        if let Some(budget) = self.global
            && spent(ledger.global.as_ref(), budget)
        {
            return Err(Exhausted {
                scope: Scope::Global,
                budget,
                retry_after: until_next_midnight(now),
            });
        }
        if self.limits_user(user)
            && let Some(u) = user
            && spent(ledger.users.get(u), self.per_user)
        {
            return Err(Exhausted {
                scope: Scope::User,
                budget: self.per_user,
                retry_after: until_next_midnight(now),
            });
        }
        Ok(())
    }

    fn release(&self, user: Option<&str>, day: NaiveDate, amount: u64, used: u64) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if ledger.day != Some(day) {
            // Reserved yesterday: today's ledger never held it.
            return;
        }
        let settle = |a: &mut Account| {
            a.reserved = a.reserved.saturating_sub(amount);
            a.used = a.used.saturating_add(used);
        };
        if let Some(u) = user
            && let Some(a) = ledger.users.get_mut(u)
        {
            settle(a);
        }
        if let Some(a) = ledger.global.as_mut() {
            settle(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger_with(budgets: &Budgets, user: &str, used: u64) {
        let mut l = budgets.ledger.lock().unwrap();
        l.roll(Utc::now().date_naive());
        l.users.insert(user.into(), Account { used, reserved: 0 });
        if budgets.global.is_some() {
            l.global = Some(Account { used, reserved: 0 });
        }
    }

    fn reserve_now(b: &Arc<Budgets>, user: &str, amount: u64) -> Result<Reservation, Exhausted> {
        let now = Utc::now();
        let mut ledger = b.ledger.lock().unwrap();
        b.admissible(&ledger, Some(user), now)?;
        ledger.users.get_mut(user).unwrap().reserved += amount;
        if let Some(g) = ledger.global.as_mut() {
            g.reserved += amount;
        }
        Ok(Reservation {
            budgets: b.clone(),
            user: Some(user.into()),
            day: now.date_naive(),
            amount,
            settled: false,
        })
    }

    #[test]
    fn reservations_admit_calls_only_while_used_plus_reserved_is_below_the_budget() {
        let b = Budgets::new(100, None);
        ledger_with(&b, "u", 0);
        let first = reserve_now(&b, "u", 60).unwrap();
        let second = reserve_now(&b, "u", 60).unwrap();
        let third = reserve_now(&b, "u", 60).unwrap_err();
        assert_eq!(third.scope, Scope::User);
        assert!(third.retry_after <= Duration::from_secs(86_400));
        // Settling releases what was not used; a dropped one releases all.
        first.settle(10);
        drop(second);
        let l = b.ledger.lock().unwrap();
        let a = l.users["u"];
        assert_eq!((a.used, a.reserved), (10, 0));
    }

    #[test]
    fn the_global_budget_binds_every_user() {
        let b = Budgets::new(0, Some(50));
        ledger_with(&b, "a", 49);
        let r = reserve_now(&b, "a", 30).unwrap();
        let err = reserve_now(&b, "a", 1).unwrap_err();
        assert_eq!(err.scope, Scope::Global);
        r.settle(30);
        assert_eq!(b.ledger.lock().unwrap().global.unwrap().used, 79);
    }

    #[test]
    fn the_estimate_covers_the_text_and_max_tokens() {
        let params = ChatParams {
            model: "m".into(),
            messages: vec![super::super::model::ChatMessage {
                role: "user".into(),
                content: "x".repeat(300),
            }],
            system: Some("y".repeat(30)),
            max_tokens: 1000,
            temperature: None,
        };
        assert_eq!(estimate_input_tokens(&params), 110 + 4 + 8);
        assert_eq!(reservation_for(&params), 1122);
    }
}
