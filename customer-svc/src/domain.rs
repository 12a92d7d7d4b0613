//! Customer types and input rules. No I/O, no generated types (their conversions are in
//! [`crate::convert`]). Everything here may hold personal data: nothing in this module logs,
//! and `Debug` output of these types must never reach a log either.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
pub use ordermesh_platform::convert::now;
pub use ordermesh_platform::validate::Address;
use ordermesh_platform::{Actor, ServiceError, Violations, validate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CustomerStatus {
    Active,
    Suspended,
    /// Erasure requested: the profile is cleared, other services are erasing their copies.
    Erasing,
    Erased,
}

impl CustomerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Erasing => "ERASING",
            Self::Erased => "ERASED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "SUSPENDED" => Self::Suspended,
            "ERASING" => Self::Erasing,
            "ERASED" => Self::Erased,
            _ => return None,
        })
    }

    /// Whether erasure was requested (ERASING) or is complete (ERASED).
    pub fn is_erased(self) -> bool {
        matches!(self, Self::Erasing | Self::Erased)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub language_code: String,
    pub currency_code: String,
    pub time_zone: String,
    /// The API's `ContactChannel` number (see [`is_contact_channel`]).
    pub preferred_contact_channel: i32,
}

/// Whether `code` is a `ContactChannel` the API defines: none (0), e-mail, SMS, phone, in-app.
pub fn is_contact_channel(code: i32) -> bool {
    (0..=4).contains(&code)
}

/// The link to an identity-provider subject (issuer + subject), unique across customers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub id: Uuid,
    pub display_name: String,
    pub email: String,
    pub phone: String,
    pub addresses: Vec<Address>,
    pub status: CustomerStatus,
    pub identity: Option<Identity>,
    pub preferences: Preferences,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub erase_time: Option<DateTime<Utc>>,
    pub version: i64,
    /// The last sign-in, order or profile change: 7 years without any and the customer is
    /// erased (`ordermesh housekeeping inactive-customers`).
    pub last_activity_time: DateTime<Utc>,
}

/// How often a sign-in is recorded as activity: at most once in this time.
pub const ACTIVITY_GRANULARITY: chrono::TimeDelta = chrono::TimeDelta::days(1);

impl Customer {
    /// Whether activity at `at` is worth recording (the last one is older than
    /// [`ACTIVITY_GRANULARITY`]): most sign-ins then write nothing.
    pub fn activity_is_stale(&self, at: DateTime<Utc>) -> bool {
        self.last_activity_time < at - ACTIVITY_GRANULARITY
    }

    /// The key `ListCustomers` sorts by: the display name, case-folded, then the id.
    pub fn sort_key(&self) -> (String, Uuid) {
        (sort_name(&self.display_name), self.id)
    }

    pub fn is_linked_to(&self, issuer: &str, subject: &str) -> bool {
        self.identity
            .as_ref()
            .is_some_and(|i| i.issuer == issuer && i.subject == subject)
    }

    /// Clears every personal field and the identity link (a new sign-up of the same person is a
    /// new customer); status ERASING until every service has confirmed. The id stays: orders
    /// and payments kept for accounting still name it, no longer linked to a person.
    pub fn erase(&mut self, at: DateTime<Utc>) {
        self.display_name.clear();
        self.email.clear();
        self.phone.clear();
        self.addresses.clear();
        self.identity = None;
        self.preferences = Preferences::default();
        self.status = CustomerStatus::Erasing;
        self.erase_time = Some(at);
        self.update_time = at.max(self.update_time);
        self.version += 1;
    }
}

/// A request to erase a customer, and which services have confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub id: Uuid,
    pub customer_id: Uuid,
    /// Why; no personal data (validated by [`erasure_reason`], recorded in the audit trail).
    pub reason: String,
    pub requested_by: Actor,
    pub request_time: DateTime<Utc>,
    /// Participants (`order`, `payment`, …) that have confirmed, sorted.
    pub confirmed: Vec<String>,
    pub complete_time: Option<DateTime<Utc>>,
}

impl Erasure {
    pub fn new(customer_id: Uuid, reason: String, requested_by: Actor, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            customer_id,
            reason,
            requested_by,
            request_time: at,
            confirmed: Vec::new(),
            complete_time: None,
        }
    }

    /// The participants of `participants` that have not confirmed yet.
    pub fn pending<'a>(&self, participants: &[&'a str]) -> Vec<&'a str> {
        participants
            .iter()
            .copied()
            .filter(|p| !self.confirmed.iter().any(|c| c == p))
            .collect()
    }
}

/// The reason given for an erasure: 1-500 characters once trimmed.
pub fn erasure_reason(reason: &str) -> Result<String, ServiceError> {
    let mut v = Violations::new();
    validate::length(&mut v, "reason", reason.trim(), 1, 500);
    v.into_result()?;
    Ok(reason.trim().to_owned())
}

/// Where an export job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportState {
    Pending,
    Ready,
}

impl ExportState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Ready => "READY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(Self::Pending),
            "READY" => Some(Self::Ready),
            _ => None,
        }
    }
}

/// A GDPR export job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataExport {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub state: ExportState,
    pub requested_by: Actor,
    pub correlation_id: String,
    pub create_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
    pub expire_time: Option<DateTime<Utc>>,
    /// Failed attempts so far (a part's service was down).
    pub attempts: i32,
    /// The bundle (JSON), once READY.
    pub document: Option<String>,
}

/// How long a ready bundle is kept for download.
pub const EXPORT_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);

impl DataExport {
    pub fn new(customer_id: Uuid, requested_by: Actor, correlation_id: String, at: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::now_v7(),
            customer_id,
            state: ExportState::Pending,
            requested_by,
            correlation_id,
            create_time: at,
            complete_time: None,
            expire_time: None,
            attempts: 0,
            document: None,
        }
    }

    /// When to try again after `attempts` failed attempts: 1 s doubling up to 5 minutes.
    pub fn retry_delay(attempts: i32) -> chrono::TimeDelta {
        let seconds = 1i64 << attempts.clamp(0, 9);
        chrono::TimeDelta::seconds(seconds.min(300))
    }
}

/// The customer fields a request states, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerInput {
    pub display_name: String,
    pub email: String,
    pub phone: String,
    pub addresses: Vec<Address>,
    pub preferences: Preferences,
    /// `None` when the request names no status or one the API does not define.
    pub status: Option<CustomerStatus>,
}

/// Case-folded display name, stored for ordering and search.
pub fn sort_name(display_name: &str) -> String {
    display_name.to_lowercase()
}

/// The form in which e-mail addresses are compared for uniqueness and search.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// RFC 5322 addr-spec in its common dot-atom form, max 254 characters.
pub fn is_valid_email(email: &str) -> bool {
    if email.len() > 254 {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    // No 64-octet limit of the local part (RFC 5321 SMTP's, not the address's): the API's
    // document states this rule as a pattern, which cannot bound one part's length.
    let local_ok = !local.is_empty() && local.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// E.164: '+', then 2-15 digits, the first not zero.
pub fn is_valid_phone(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

fn check_name(v: &mut Violations, field: &str, name: &str) {
    validate::length(v, field, name.trim(), 1, 200);
}

fn check_email(v: &mut Violations, field: &str, email: &str) {
    if email.trim().is_empty() {
        v.add(field, "is required");
    } else if !is_valid_email(email.trim()) {
        v.add(field, "must be a valid e-mail address (at most 254 characters)");
    }
}

fn check_phone(v: &mut Violations, field: &str, phone: &str) {
    if !phone.is_empty() && !is_valid_phone(phone) {
        v.add(field, "must be an E.164 phone number such as +4915112345678");
    }
}

fn check_addresses(v: &mut Violations, field: &str, addresses: &[Address]) {
    if addresses.len() > 10 {
        v.add(field, "must have at most 10 addresses");
    }
    for (i, a) in addresses.iter().enumerate() {
        validate::address(v, &format!("{field}[{i}]"), a);
    }
}

fn check_language(v: &mut Violations, field: &str, code: &str) {
    let mut parts = code.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let ok = code.is_empty()
        || (code.len() <= 35
            && primary_ok
            && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())));
    v.check(ok, field, "must be a BCP-47 language tag such as en or de-AT");
}

fn check_time_zone(v: &mut Violations, field: &str, zone: &str) {
    let segment = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_+-".contains(c));
    let ok =
        zone.is_empty() || zone == "UTC" || (zone.len() <= 64 && zone.contains('/') && zone.split('/').all(segment));
    v.check(ok, field, "must be an IANA time zone such as Europe/Berlin");
}

/// Which preference fields an update touches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreferencesPatch {
    pub language_code: Option<String>,
    pub currency_code: Option<String>,
    pub time_zone: Option<String>,
    pub preferred_contact_channel: Option<i32>,
}

impl PreferencesPatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn apply(&self, p: &mut Preferences) {
        if let Some(v) = &self.language_code {
            p.language_code = v.clone();
        }
        if let Some(v) = &self.currency_code {
            p.currency_code = v.clone();
        }
        if let Some(v) = &self.time_zone {
            p.time_zone = v.clone();
        }
        if let Some(v) = self.preferred_contact_channel {
            p.preferred_contact_channel = v;
        }
    }
}

/// The preference fields, as an `UpdatePreferences` mask names them.
pub const PREFERENCE_FIELDS: [&str; 4] = [
    "language_code",
    "currency_code",
    "time_zone",
    "preferred_contact_channel",
];

/// The paths an `UpdateCustomer` mask may name.
pub const CUSTOMER_FIELDS: [&str; 7] = [
    "display_name",
    "email",
    "phone",
    "addresses",
    "preferences",
    "preferences.*",
    "status",
];

/// Validates the preference field `name` of `input` and records it in `patch`.
fn patch_preference(v: &mut Violations, prefix: &str, name: &str, input: &Preferences, patch: &mut PreferencesPatch) {
    let field = format!("{prefix}{name}");
    match name {
        "language_code" => {
            check_language(v, &field, &input.language_code);
            patch.language_code = Some(input.language_code.clone());
        }
        "currency_code" => {
            let ok = input.currency_code.is_empty() || validate::is_currency_code(&input.currency_code);
            v.check(ok, &field, "must be an ISO-4217 code of three upper-case letters");
            patch.currency_code = Some(input.currency_code.clone());
        }
        "time_zone" => {
            check_time_zone(v, &field, &input.time_zone);
            patch.time_zone = Some(input.time_zone.clone());
        }
        "preferred_contact_channel" => {
            let ok = is_contact_channel(input.preferred_contact_channel);
            v.check(ok, &field, "is not a known contact channel");
            patch.preferred_contact_channel = Some(input.preferred_contact_channel);
        }
        _ => {}
    }
}

/// Validates a new customer (the identity link is decided by the caller's rights).
pub fn new_customer(
    input: &CustomerInput,
    identity: Option<Identity>,
    idempotency_key: &str,
) -> Result<Customer, ServiceError> {
    let mut v = Violations::new();
    check_name(&mut v, "display_name", &input.display_name);
    check_email(&mut v, "email", &input.email);
    check_phone(&mut v, "phone", &input.phone);
    check_addresses(&mut v, "addresses", &input.addresses);
    // A new customer states every preference.
    preferences_patch(&mut v, &PREFERENCE_FIELDS, &input.preferences);
    if let Some(identity) = &identity {
        validate::length(&mut v, "identity.issuer", &identity.issuer, 1, 512);
        validate::length(&mut v, "identity.subject", &identity.subject, 1, 256);
    }
    validate::length(&mut v, "idempotency_key", idempotency_key, 0, 128);
    v.into_result()?;
    let now = now();
    Ok(Customer {
        id: Uuid::now_v7(),
        display_name: input.display_name.trim().to_owned(),
        email: input.email.trim().to_owned(),
        phone: input.phone.clone(),
        addresses: input.addresses.clone(),
        status: CustomerStatus::Active,
        identity,
        preferences: input.preferences.clone(),
        create_time: now,
        update_time: now,
        erase_time: None,
        version: 1,
        last_activity_time: now,
    })
}

/// The names of the profile fields that differ between `before` and `after` (as the API names
/// them), for `CustomerUpdated`: which fields changed, never their values.
pub fn changed_fields(before: &Customer, after: &Customer) -> Vec<String> {
    let fields = [
        ("display_name", before.display_name != after.display_name),
        ("email", before.email != after.email),
        ("phone", before.phone != after.phone),
        ("addresses", before.addresses != after.addresses),
        ("preferences", before.preferences != after.preferences),
        ("status", before.status != after.status),
    ];
    fields
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// What `UpdateCustomer` changes (only masked fields are `Some`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub addresses: Option<Vec<Address>>,
    pub preferences: PreferencesPatch,
    pub status: Option<CustomerStatus>,
}

impl CustomerPatch {
    /// Applies the patch; FAILED_PRECONDITION for an erased customer.
    pub fn apply(&self, c: &mut Customer) -> Result<(), ServiceError> {
        if c.status.is_erased() {
            return Err(ServiceError::precondition(
                "CUSTOMER_ERASED",
                "the customer has been erased",
            ));
        }
        if let Some(v) = &self.display_name {
            c.display_name = v.clone();
        }
        if let Some(v) = &self.email {
            c.email = v.clone();
        }
        if let Some(v) = &self.phone {
            c.phone = v.clone();
        }
        if let Some(v) = &self.addresses {
            c.addresses = v.clone();
        }
        self.preferences.apply(&mut c.preferences);
        if let Some(v) = self.status {
            c.status = v;
        }
        c.version += 1;
        c.update_time = now().max(c.update_time);
        c.last_activity_time = c.update_time;
        Ok(())
    }
}

/// Validates the fields of `input` that `paths` (already checked against [`CUSTOMER_FIELDS`])
/// name, into the patch of an `UpdateCustomer`.
pub fn customer_patch(v: &mut Violations, paths: &[&str], input: &CustomerInput) -> CustomerPatch {
    let mut patch = CustomerPatch::default();
    let prefix = "customer.preferences.";
    for path in paths {
        match *path {
            "display_name" => {
                check_name(v, "customer.display_name", &input.display_name);
                patch.display_name = Some(input.display_name.trim().to_owned());
            }
            "email" => {
                check_email(v, "customer.email", &input.email);
                patch.email = Some(input.email.trim().to_owned());
            }
            "phone" => {
                check_phone(v, "customer.phone", &input.phone);
                patch.phone = Some(input.phone.clone());
            }
            "addresses" => {
                check_addresses(v, "customer.addresses", &input.addresses);
                patch.addresses = Some(input.addresses.clone());
            }
            "preferences" => {
                for name in PREFERENCE_FIELDS {
                    patch_preference(v, prefix, name, &input.preferences, &mut patch.preferences);
                }
            }
            "status" => match input.status {
                Some(s @ (CustomerStatus::Active | CustomerStatus::Suspended)) => patch.status = Some(s),
                _ => {
                    v.add("customer.status", "must be ACTIVE or SUSPENDED");
                }
            },
            other => {
                // Paths outside the allowed list were already reported with the mask.
                if let Some(name) = other.strip_prefix("preferences.") {
                    if PREFERENCE_FIELDS.contains(&name) {
                        patch_preference(v, prefix, name, &input.preferences, &mut patch.preferences);
                    } else {
                        v.add("update_mask", format!("path {other:?} is not a preference field"));
                    }
                }
            }
        }
    }
    patch
}

/// Validates the preferences that `paths` (already checked against [`PREFERENCE_FIELDS`]) name,
/// into the patch of an `UpdatePreferences`.
pub fn preferences_patch(v: &mut Violations, paths: &[&str], input: &Preferences) -> PreferencesPatch {
    let mut patch = PreferencesPatch::default();
    for path in paths {
        patch_preference(v, "preferences.", path, input, &mut patch);
    }
    patch
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub purpose: String,
    pub granted: bool,
    pub policy_version: String,
    pub source: String,
    pub recorded_by: Actor,
    pub record_time: DateTime<Utc>,
}

impl Consent {
    /// Keyset of `ListConsents` (newest first).
    pub fn list_key(&self) -> (DateTime<Utc>, Uuid) {
        (self.record_time, self.id)
    }
}

/// A consent as a request states it, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentInput {
    pub purpose: String,
    pub granted: bool,
    pub policy_version: String,
    pub source: String,
}

pub fn is_valid_purpose(purpose: &str) -> bool {
    (1..=64).contains(&purpose.len())
        && purpose
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Validates a consent (the customer id is checked by the caller).
pub fn new_consent(input: &ConsentInput, customer_id: Uuid, recorded_by: Actor) -> Result<Consent, ServiceError> {
    let mut v = Violations::new();
    v.check(
        is_valid_purpose(&input.purpose),
        "purpose",
        "must be 1-64 characters of a-z, 0-9 and '_'",
    );
    validate::length(&mut v, "policy_version", &input.policy_version, 1, 64);
    validate::length(&mut v, "source", &input.source, 0, 64);
    v.into_result()?;
    Ok(Consent {
        id: Uuid::now_v7(),
        customer_id,
        purpose: input.purpose.clone(),
        granted: input.granted,
        policy_version: input.policy_version.clone(),
        source: input.source.clone(),
        recorded_by,
        record_time: now(),
    })
}

/// Filters of `ListCustomers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CustomerFilter {
    /// Lower-cased substring of the display name or e-mail.
    pub query: Option<String>,
    pub status: Option<CustomerStatus>,
    /// Customers in every one of these segments (sorted, no repeats); empty: no segment filter.
    pub segments: Vec<Segment>,
}

/// Validates a `ListCustomers` search text into its case-folded form (`None`: no search).
pub fn search_query(v: &mut Violations, query: &str) -> Option<String> {
    validate::length(v, "query", query, 0, 200);
    let query = query.trim().to_lowercase();
    (!query.is_empty()).then_some(query)
}

/// A group of customers by their sold orders, for employees (the `segments` of a customer and
/// the `ListCustomers` filter). A customer may be in several, or in none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Segment {
    /// Registered within [`SegmentRules::new_within`] and at most one sold order.
    New,
    /// Two or more sold orders.
    Repeat,
    /// Sold orders worth at least [`SegmentRules::high_value_minor`] in some currency.
    HighValue,
    /// At least one sold order, none within [`SegmentRules::dormant_after`].
    Dormant,
}

impl Segment {
    pub const ALL: [Segment; 4] = [Self::New, Self::Repeat, Self::HighValue, Self::Dormant];
}

/// A customer's sold orders: confirmed ones, less those cancelled after confirmation. Counts,
/// amounts and times only (the projection of `order-events`, see the store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderHistory {
    pub sold_orders: i64,
    /// Lifetime sold value per currency (ISO-4217 code → minor units); currencies are never
    /// added together.
    pub sold_value: BTreeMap<String, i64>,
    /// When the first and the last sold order were confirmed; `None` without any.
    pub first_order_time: Option<DateTime<Utc>>,
    pub last_order_time: Option<DateTime<Utc>>,
}

/// A confirmed order as the segments count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub currency_code: String,
    pub amount_minor: i64,
    /// When it was confirmed: the order's time for the segments.
    pub sold_time: DateTime<Utc>,
}

/// The thresholds of the segments (`CUSTOMER_NEW_DAYS`, `CUSTOMER_HIGH_VALUE_MINOR`,
/// `CUSTOMER_DORMANT_DAYS`, read once at start-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRules {
    /// NEW: registered at most this long ago.
    pub new_within: TimeDelta,
    /// HIGH_VALUE: lifetime sold value, in minor units of one currency, at least this.
    pub high_value_minor: i64,
    /// DORMANT: no sold order for longer than this.
    pub dormant_after: TimeDelta,
}

impl Default for SegmentRules {
    fn default() -> Self {
        Self {
            new_within: TimeDelta::days(30),
            high_value_minor: 100_000,
            dormant_after: TimeDelta::days(180),
        }
    }
}

impl SegmentRules {
    /// The rules as instants at `now`: the one form both [`SegmentBounds::segments`] and the
    /// store's `ListCustomers` filter read, so the two cannot disagree about a boundary.
    pub fn at(&self, now: DateTime<Utc>) -> SegmentBounds {
        SegmentBounds {
            new_since: now - self.new_within,
            high_value_minor: self.high_value_minor,
            dormant_before: now - self.dormant_after,
        }
    }
}

/// [`SegmentRules`] at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentBounds {
    /// NEW: created at or after this.
    pub new_since: DateTime<Utc>,
    pub high_value_minor: i64,
    /// DORMANT: the last sold order before this (one exactly at it is recent).
    pub dormant_before: DateTime<Utc>,
}

impl SegmentBounds {
    /// Whether `customer` with `history` is in `segment`. An erased (or erasing) customer is in
    /// none: there is no one left to address.
    pub fn contains(&self, segment: Segment, customer: &Customer, history: &OrderHistory) -> bool {
        if customer.status.is_erased() {
            return false;
        }
        match segment {
            Segment::New => customer.create_time >= self.new_since && history.sold_orders <= 1,
            Segment::Repeat => history.sold_orders >= 2,
            Segment::HighValue => history.sold_value.values().any(|v| *v >= self.high_value_minor),
            Segment::Dormant => {
                history.sold_orders >= 1 && history.last_order_time.is_some_and(|t| t < self.dormant_before)
            }
        }
    }

    /// The segments `customer` with `history` is in, in the order of [`Segment::ALL`].
    pub fn segments(&self, customer: &Customer, history: &OrderHistory) -> Vec<Segment> {
        Segment::ALL
            .into_iter()
            .filter(|s| self.contains(*s, customer, history))
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The fields an INVALID_ARGUMENT names, in order.
    pub(crate) fn fields(err: ServiceError) -> Vec<String> {
        match err {
            ServiceError::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not invalid: {other}"),
        }
    }

    #[test]
    fn emails() {
        for ok in ["a@example.com", "first.last+tag@sub.example.co", "x_y@ex-ample.de"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@b",
            "a..b@example.com",
            "a@-x.com",
            "a@example.c0m",
            "a b@example.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
        // The whole address is bounded (254); a part of it only by that.
        assert!(is_valid_email(&format!("{}@example.com", "a".repeat(65))));
        assert!(!is_valid_email(&format!("{}@example.com", "a".repeat(250))));
    }

    #[test]
    fn phones() {
        assert!(is_valid_phone("+4915112345678"));
        for bad in ["4915112345678", "+0151", "+49 151", "+1234567890123456", "+"] {
            assert!(!is_valid_phone(bad), "{bad}");
        }
    }

    #[test]
    fn create_reports_every_bad_field() {
        let input = CustomerInput {
            display_name: " ".into(),
            email: "nope".into(),
            phone: "0151".into(),
            addresses: vec![Address {
                country_code: "de".into(),
                ..Default::default()
            }],
            preferences: Preferences {
                time_zone: "Mars".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            fields(new_customer(&input, None, "").unwrap_err()),
            [
                "display_name",
                "email",
                "phone",
                "addresses[0].line1",
                "addresses[0].city",
                "addresses[0].country_code",
                "preferences.time_zone"
            ]
        );
    }

    fn registered(at: DateTime<Utc>) -> Customer {
        let input = CustomerInput {
            display_name: "A".into(),
            email: "a@example.com".into(),
            ..Default::default()
        };
        Customer {
            create_time: at,
            ..new_customer(&input, None, "").unwrap()
        }
    }

    fn history(sold_orders: i64, value: &[(&str, i64)], last: Option<DateTime<Utc>>) -> OrderHistory {
        OrderHistory {
            sold_orders,
            sold_value: value.iter().map(|(c, v)| ((*c).to_owned(), *v)).collect(),
            first_order_time: last,
            last_order_time: last,
        }
    }

    #[test]
    fn segment_boundaries() {
        let now = now();
        let rules = SegmentRules::default();
        let at = rules.at(now);
        let day = TimeDelta::days(1);
        let tick = TimeDelta::microseconds(1);
        let none = OrderHistory::default();
        let recent = Some(now - day);

        // NEW: registered within 30 days (the 30th day included) and at most one sold order.
        assert_eq!(at.segments(&registered(now), &none), [Segment::New]);
        assert_eq!(at.segments(&registered(now - day * 30), &none), [Segment::New]);
        assert_eq!(at.segments(&registered(now - day * 30 - tick), &none), []);
        assert_eq!(
            at.segments(&registered(now), &history(1, &[("EUR", 10)], recent)),
            [Segment::New]
        );
        // REPEAT from the second sold order, and then no longer new.
        assert_eq!(
            at.segments(&registered(now), &history(2, &[("EUR", 10)], recent)),
            [Segment::Repeat]
        );
        // HIGH_VALUE at 1,000.00 in one currency; currencies are not added together.
        let old = registered(now - day * 400);
        assert_eq!(at.segments(&old, &history(1, &[("EUR", 99_999)], recent)), []);
        assert_eq!(
            at.segments(&old, &history(1, &[("EUR", 100_000)], recent)),
            [Segment::HighValue]
        );
        assert_eq!(
            at.segments(&old, &history(2, &[("EUR", 60_000), ("USD", 60_000)], recent)),
            [Segment::Repeat]
        );
        // DORMANT: the last sold order more than 180 days ago; one exactly 180 days ago is recent.
        assert_eq!(
            at.segments(&old, &history(1, &[("EUR", 10)], Some(now - day * 180))),
            []
        );
        assert_eq!(
            at.segments(&old, &history(1, &[("EUR", 10)], Some(now - day * 180 - tick))),
            [Segment::Dormant]
        );
        assert_eq!(at.segments(&old, &none), [], "never ordered is not dormant");
        // Several at once, in the order of Segment::ALL.
        assert_eq!(
            at.segments(&old, &history(3, &[("EUR", 250_000)], Some(now - day * 365))),
            [Segment::Repeat, Segment::HighValue, Segment::Dormant]
        );
        // An erased customer is in no segment.
        let mut erased = registered(now);
        erased.erase(now);
        assert_eq!(at.segments(&erased, &none), []);
    }

    #[test]
    fn segment_thresholds_are_the_configured_ones() {
        let now = now();
        let rules = SegmentRules {
            new_within: TimeDelta::days(7),
            high_value_minor: 500,
            dormant_after: TimeDelta::days(10),
        };
        let at = rules.at(now);
        let eight_days_ago = now - TimeDelta::days(8);
        let customer = registered(eight_days_ago);
        assert_eq!(
            at.segments(&customer, &history(1, &[("JPY", 500)], Some(eight_days_ago))),
            [Segment::HighValue]
        );
        assert_eq!(
            at.segments(&customer, &history(1, &[("JPY", 499)], Some(now - TimeDelta::days(11)))),
            [Segment::Dormant]
        );
    }
}
