//! Customers: the profile, its preferences, and the bodies that create and change one.

use chrono::{DateTime, Utc};
use ordermesh_proto::customer;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::common::{Address, page, time};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerStatus {
    Unspecified,
    Active,
    Suspended,
    /// Erasure requested; the other services are erasing their copies.
    Erasing,
    Erased,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContactChannel {
    Unspecified,
    Email,
    Sms,
    Phone,
    InApp,
}

impl ContactChannel {
    fn from_proto(value: i32) -> Self {
        use customer::ContactChannel as P;
        match P::try_from(value).unwrap_or(P::Unspecified) {
            P::Unspecified => Self::Unspecified,
            P::Email => Self::Email,
            P::Sms => Self::Sms,
            P::Phone => Self::Phone,
            P::InApp => Self::InApp,
        }
    }

    fn to_proto(self) -> customer::ContactChannel {
        use customer::ContactChannel as P;
        match self {
            Self::Unspecified => P::Unspecified,
            Self::Email => P::Email,
            Self::Sms => P::Sms,
            Self::Phone => P::Phone,
            Self::InApp => P::InApp,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preferences {
    /// BCP-47, e.g. `de-AT`; empty for none.
    #[serde(default)]
    #[schema(max_length = 35, pattern = "^([A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*)?$")]
    pub language_code: String,
    /// ISO-4217; empty for none.
    #[serde(default)]
    #[schema(pattern = "^([A-Z]{3})?$")]
    pub currency_code: String,
    /// IANA zone, e.g. `Europe/Berlin`; empty for none.
    #[serde(default)]
    #[schema(max_length = 64, pattern = "^(UTC|[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)+)?$")]
    pub time_zone: String,
    #[serde(default = "unspecified_channel")]
    pub preferred_contact_channel: ContactChannel,
}

fn unspecified_channel() -> ContactChannel {
    ContactChannel::Unspecified
}

impl Preferences {
    fn from_proto(p: customer::CustomerPreferences) -> Self {
        Self {
            language_code: p.language_code,
            currency_code: p.currency_code,
            time_zone: p.time_zone,
            preferred_contact_channel: ContactChannel::from_proto(p.preferred_contact_channel),
        }
    }

    pub fn to_proto(&self) -> customer::CustomerPreferences {
        customer::CustomerPreferences {
            language_code: self.language_code.clone(),
            currency_code: self.currency_code.clone(),
            time_zone: self.time_zone.clone(),
            preferred_contact_channel: self.preferred_contact_channel.to_proto() as i32,
        }
    }
}

/// A customer profile.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    pub id: String,
    pub display_name: String,
    pub email: String,
    pub phone: String,
    pub addresses: Vec<Address>,
    pub status: CustomerStatus,
    pub preferences: Option<Preferences>,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// The customer's segments (shown to employees; empty for clients). Rules in the README.
    pub segments: Vec<CustomerSegment>,
}

/// A segment of the customer base, by ordering (rules in the README: "Customer segments").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CustomerSegment {
    New,
    Repeat,
    HighValue,
    Dormant,
}

impl CustomerSegment {
    pub fn from_proto(value: i32) -> Option<Self> {
        use customer::CustomerSegment as P;
        match P::try_from(value).ok()? {
            P::Unspecified => None,
            P::New => Some(Self::New),
            P::Repeat => Some(Self::Repeat),
            P::HighValue => Some(Self::HighValue),
            P::Dormant => Some(Self::Dormant),
        }
    }

    pub fn to_proto(self) -> customer::CustomerSegment {
        use customer::CustomerSegment as P;
        match self {
            Self::New => P::New,
            Self::Repeat => P::Repeat,
            Self::HighValue => P::HighValue,
            Self::Dormant => P::Dormant,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
    }
}

impl Customer {
    pub fn from_proto(c: customer::Customer) -> Self {
        use customer::CustomerStatus as P;
        Self {
            id: c.id,
            display_name: c.display_name,
            email: c.email,
            phone: c.phone,
            addresses: c.addresses.into_iter().map(Address::from_proto).collect(),
            status: match P::try_from(c.status).unwrap_or(P::Unspecified) {
                P::Unspecified => CustomerStatus::Unspecified,
                P::Active => CustomerStatus::Active,
                P::Suspended => CustomerStatus::Suspended,
                P::Erasing => CustomerStatus::Erasing,
                P::Erased => CustomerStatus::Erased,
            },
            preferences: c.preferences.map(Preferences::from_proto),
            created_at: time(c.create_time),
            updated_at: time(c.update_time),
            version: c.version,
            segments: c.segments.into_iter().filter_map(CustomerSegment::from_proto).collect(),
        }
    }
}

page!(CustomerPage, Customer);

/// Body of `POST /api/v1/customers/me`: the profile of the signed-in client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProfile {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub display_name: String,
    #[schema(
        max_length = 254,
        pattern = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$"
    )]
    pub email: String,
    /// E.164, e.g. `+4915112345678`; empty for none.
    #[serde(default)]
    #[schema(pattern = "^(\\+[1-9][0-9]{1,14})?$")]
    pub phone: String,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub addresses: Vec<Address>,
    pub preferences: Option<Preferences>,
}

/// Body of `PUT /api/v1/customers/{id}`: the fields present are replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateCustomer {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub display_name: Option<String>,
    #[schema(
        max_length = 254,
        pattern = "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}$"
    )]
    pub email: Option<String>,
    /// E.164, e.g. `+4915112345678`; empty to remove.
    #[schema(pattern = "^(\\+[1-9][0-9]{1,14})?$")]
    pub phone: Option<String>,
    #[schema(max_items = 10)]
    pub addresses: Option<Vec<Address>>,
    pub preferences: Option<Preferences>,
    /// Succeeds only if the profile is still at this version (409 otherwise).
    #[schema(minimum = 0, maximum = 9_007_199_254_740_991_i64)]
    pub expected_version: Option<i64>,
}
