//! Conversions between the generated `ordermesh.customer.v1` types and the domain, and the
//! decoding of requests (ids, update masks, enum numbers) around the domain's input rules.
//! Times and actors convert through `ordermesh_platform::convert`.

use ordermesh_platform::convert::{optional_timestamp, timestamp};
use ordermesh_platform::{ServiceError, Violations, validate};
use ordermesh_proto::{common, customer as pb};
use uuid::Uuid;

use crate::domain::{
    self, Address, Consent, ConsentInput, Customer, CustomerFilter, CustomerInput, CustomerPatch, CustomerStatus,
    DataExport, ExportState, Preferences, PreferencesPatch, Segment,
};

impl From<CustomerStatus> for pb::CustomerStatus {
    fn from(status: CustomerStatus) -> Self {
        match status {
            CustomerStatus::Active => Self::Active,
            CustomerStatus::Suspended => Self::Suspended,
            CustomerStatus::Erasing => Self::Erasing,
            CustomerStatus::Erased => Self::Erased,
        }
    }
}

/// The status a request names; `None` for unspecified or a number the API does not define.
pub fn customer_status(value: i32) -> Option<CustomerStatus> {
    match pb::CustomerStatus::try_from(value).ok()? {
        pb::CustomerStatus::Active => Some(CustomerStatus::Active),
        pb::CustomerStatus::Suspended => Some(CustomerStatus::Suspended),
        pb::CustomerStatus::Erased => Some(CustomerStatus::Erased),
        pb::CustomerStatus::Erasing => Some(CustomerStatus::Erasing),
        pb::CustomerStatus::Unspecified => None,
    }
}

impl From<Segment> for pb::CustomerSegment {
    fn from(segment: Segment) -> Self {
        match segment {
            Segment::New => Self::New,
            Segment::Repeat => Self::Repeat,
            Segment::HighValue => Self::HighValue,
            Segment::Dormant => Self::Dormant,
        }
    }
}

/// The segment a request names; `None` for unspecified or a number the API does not define.
pub fn customer_segment(value: i32) -> Option<Segment> {
    match pb::CustomerSegment::try_from(value).ok()? {
        pb::CustomerSegment::New => Some(Segment::New),
        pb::CustomerSegment::Repeat => Some(Segment::Repeat),
        pb::CustomerSegment::HighValue => Some(Segment::HighValue),
        pb::CustomerSegment::Dormant => Some(Segment::Dormant),
        pb::CustomerSegment::Unspecified => None,
    }
}

impl From<&pb::CustomerPreferences> for Preferences {
    fn from(p: &pb::CustomerPreferences) -> Self {
        Self {
            language_code: p.language_code.clone(),
            currency_code: p.currency_code.clone(),
            time_zone: p.time_zone.clone(),
            preferred_contact_channel: p.preferred_contact_channel,
        }
    }
}

impl From<&Preferences> for pb::CustomerPreferences {
    fn from(p: &Preferences) -> Self {
        Self {
            language_code: p.language_code.clone(),
            currency_code: p.currency_code.clone(),
            time_zone: p.time_zone.clone(),
            preferred_contact_channel: p.preferred_contact_channel,
        }
    }
}

fn preferences(input: Option<&pb::CustomerPreferences>) -> Preferences {
    input.map(Preferences::from).unwrap_or_default()
}

impl From<&Customer> for pb::Customer {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.to_string(),
            display_name: c.display_name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            addresses: c.addresses.iter().map(common::Address::from).collect(),
            status: pb::CustomerStatus::from(c.status) as i32,
            identity: c.identity.as_ref().map(|i| pb::IdentityLink {
                issuer: i.issuer.clone(),
                subject: i.subject.clone(),
            }),
            preferences: Some((&c.preferences).into()),
            create_time: Some(timestamp(c.create_time)),
            update_time: Some(timestamp(c.update_time)),
            erase_time: optional_timestamp(c.erase_time),
            version: c.version,
            // Only for employees, who ask for them (see `grpc`).
            segments: Vec::new(),
        }
    }
}

impl From<&pb::CreateCustomerRequest> for CustomerInput {
    fn from(req: &pb::CreateCustomerRequest) -> Self {
        Self {
            display_name: req.display_name.clone(),
            email: req.email.clone(),
            phone: req.phone.clone(),
            addresses: req.addresses.iter().map(Address::from).collect(),
            preferences: preferences(req.preferences.as_ref()),
            status: None,
        }
    }
}

impl From<&pb::Customer> for CustomerInput {
    fn from(c: &pb::Customer) -> Self {
        Self {
            display_name: c.display_name.clone(),
            email: c.email.clone(),
            phone: c.phone.clone(),
            addresses: c.addresses.iter().map(Address::from).collect(),
            preferences: preferences(c.preferences.as_ref()),
            status: customer_status(c.status),
        }
    }
}

impl From<&DataExport> for pb::CustomerDataExport {
    fn from(e: &DataExport) -> Self {
        Self {
            export_id: e.id.to_string(),
            customer_id: e.customer_id.to_string(),
            state: match e.state {
                ExportState::Pending => pb::ExportState::Pending,
                ExportState::Ready => pb::ExportState::Ready,
            } as i32,
            create_time: Some(timestamp(e.create_time)),
            complete_time: e.complete_time.map(timestamp),
            expire_time: e.expire_time.map(timestamp),
            json_document: e.document.clone().map(String::into_bytes).unwrap_or_default(),
        }
    }
}

impl From<&Consent> for pb::Consent {
    fn from(c: &Consent) -> Self {
        Self {
            id: c.id.to_string(),
            customer_id: c.customer_id.to_string(),
            purpose: c.purpose.clone(),
            granted: c.granted,
            policy_version: c.policy_version.clone(),
            source: c.source.clone(),
            recorded_by: Some((&c.recorded_by).into()),
            record_time: Some(timestamp(c.record_time)),
        }
    }
}

impl From<&pb::RecordConsentRequest> for ConsentInput {
    fn from(req: &pb::RecordConsentRequest) -> Self {
        Self {
            purpose: req.purpose.clone(),
            granted: req.granted,
            policy_version: req.policy_version.clone(),
            source: req.source.clone(),
        }
    }
}

/// An `UpdateCustomerRequest` as the customer id and the patch.
pub fn customer_update(req: &pb::UpdateCustomerRequest) -> Result<(Uuid, CustomerPatch), ServiceError> {
    let Some(customer) = &req.customer else {
        return Err(ServiceError::invalid("customer", "is required"));
    };
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "customer.id", &customer.id);
    let paths = validate::update_mask(&mut v, req.update_mask.as_ref(), &domain::CUSTOMER_FIELDS);
    let patch = domain::customer_patch(&mut v, &paths, &customer.into());
    v.into_result()?;
    Ok((id.expect("validated"), patch))
}

/// An `UpdatePreferencesRequest` as the customer id and the patch.
pub fn preferences_update(req: &pb::UpdatePreferencesRequest) -> Result<(Uuid, PreferencesPatch), ServiceError> {
    let mut v = Violations::new();
    let id = validate::uuid(&mut v, "customer_id", &req.customer_id);
    let paths = validate::update_mask(&mut v, req.update_mask.as_ref(), &domain::PREFERENCE_FIELDS);
    let patch = domain::preferences_patch(&mut v, &paths, &preferences(req.preferences.as_ref()));
    v.into_result()?;
    Ok((id.expect("validated"), patch))
}

/// The filters of a `ListCustomersRequest`.
pub fn customer_filter(req: &pb::ListCustomersRequest) -> Result<CustomerFilter, ServiceError> {
    let mut v = Violations::new();
    let query = domain::search_query(&mut v, &req.query);
    let status = match req.status {
        0 => None,
        value => {
            let status = customer_status(value);
            v.check(status.is_some(), "status", "is not a known customer status");
            status
        }
    };
    let mut segments = Vec::new();
    for (i, value) in req.segments.iter().enumerate() {
        match customer_segment(*value) {
            Some(segment) => segments.push(segment),
            None => {
                v.add(format!("segments[{i}]"), "is not a known customer segment");
            }
        }
    }
    // Sorted and without repeats: the page token is bound to the filter, and [A, B], [B, A] and
    // [A, B, A] are one filter.
    segments.sort();
    segments.dedup();
    v.into_result()?;
    Ok(CustomerFilter {
        query,
        status,
        segments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tests::fields;

    #[test]
    fn the_domain_knows_every_contact_channel_of_the_api() {
        for code in -1..=16 {
            assert_eq!(
                domain::is_contact_channel(code),
                pb::ContactChannel::try_from(code).is_ok(),
                "{code}"
            );
        }
    }

    #[test]
    fn the_domain_knows_every_segment_of_the_api() {
        for code in 1..=16 {
            let known = pb::CustomerSegment::try_from(code).is_ok();
            assert_eq!(customer_segment(code).is_some(), known, "{code}");
            if let Some(segment) = customer_segment(code) {
                assert_eq!(pb::CustomerSegment::from(segment) as i32, code);
            }
        }
        assert_eq!(customer_segment(0), None);
    }

    #[test]
    fn segment_filters_are_checked_and_normalised() {
        let list = |segments: Vec<i32>| pb::ListCustomersRequest {
            segments,
            ..Default::default()
        };
        let repeat = pb::CustomerSegment::Repeat as i32;
        let dormant = pb::CustomerSegment::Dormant as i32;
        let filter = customer_filter(&list(vec![dormant, repeat, dormant])).unwrap();
        assert_eq!(filter.segments, [Segment::Repeat, Segment::Dormant]);
        assert_eq!(filter, customer_filter(&list(vec![repeat, dormant])).unwrap());
        assert_eq!(
            fields(customer_filter(&list(vec![repeat, 0, 99])).unwrap_err()),
            ["segments[1]", "segments[2]"]
        );
    }

    #[test]
    fn patch_respects_the_mask_and_erasure() {
        let input = pb::Customer {
            id: Uuid::now_v7().to_string(),
            display_name: String::new(),
            preferences: Some(pb::CustomerPreferences {
                language_code: "de-AT".into(),
                ..Default::default()
            }),
            status: pb::CustomerStatus::Suspended as i32,
            ..Default::default()
        };
        let update = |paths: &[&str]| pb::UpdateCustomerRequest {
            customer: Some(input.clone()),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            expected_version: None,
        };
        let (_, patch) = customer_update(&update(&["preferences.language_code", "status"])).unwrap();
        assert_eq!(patch.display_name, None);
        assert_eq!(patch.preferences.language_code.as_deref(), Some("de-AT"));
        assert_eq!(patch.preferences.time_zone, None);
        assert_eq!(patch.status, Some(CustomerStatus::Suspended));

        assert_eq!(
            fields(customer_update(&update(&["preferences.nope", "id"])).unwrap_err()),
            ["update_mask", "update_mask"]
        );

        let new = CustomerInput {
            display_name: "A".into(),
            email: "a@example.com".into(),
            ..Default::default()
        };
        let mut customer = domain::new_customer(&new, None, "").unwrap();
        customer.status = CustomerStatus::Erased;
        assert!(matches!(
            patch.apply(&mut customer),
            Err(ServiceError::FailedPrecondition { .. })
        ));
    }
}
