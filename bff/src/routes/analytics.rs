//! `/api/v1/analytics`: the figures of the employee portal's analytics and reports, each
//! computed by the service that owns the data (order-svc: orders, products, confirmation times,
//! rejections; payment-svc: revenue) and composed here.

use axum::Json;
use chrono::Datelike as _;
use ordermesh_proto::common::DateRange;
use ordermesh_proto::{order, payment};
use serde::Deserialize;
use utoipa::IntoParams;

use super::Shared;
use crate::auth::Caller;
use crate::extract::ApiQuery;
use crate::models::{AnalyticsSummary, OrderFigures, RevenueFigures};
use crate::problem::{ApiResult, Problem};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// First day, `YYYY-MM-DD`.
    #[param(format = Date, example = "2026-11-01")]
    pub from: chrono::NaiveDate,
    /// Number of days from `from` on, 1 to `BFF_ANALYTICS_MAX_DAYS` (default 366; the document
    /// states the configured maximum). A length rather than a last day: the limit is then a
    /// bound of one parameter, which the document can state.
    #[param(minimum = 1, maximum = 366, example = 30)]
    pub days: u32,
    /// IANA time zone of the days; default `UTC`.
    #[param(example = "Europe/Berlin")]
    pub time_zone: Option<String>,
    /// Products in each top list, 1-50; default 10.
    #[param(minimum = 1, maximum = 50)]
    pub top: Option<u32>,
}

/// Orders by status and by day, best sellers, time to confirmation, rejection reasons and
/// revenue (captured minus refunded) by day and currency, for a range of days in a time zone.
#[utoipa::path(get, path = "/api/v1/analytics/summary", tag = "analytics", params(SummaryQuery),
    responses((status = 200, description = "The figures", body = AnalyticsSummary)))]
pub async fn summary(
    state: Shared,
    caller: Caller,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> ApiResult<Json<AnalyticsSummary>> {
    let max = state.config.analytics_max_days;
    if q.days == 0 || i64::from(q.days) > max {
        return Err(Problem::invalid_field("days", format!("must be between 1 and {max}")));
    }
    let to = q
        .from
        .checked_add_days(chrono::Days::new(u64::from(q.days) - 1))
        .filter(|to| to.year() <= 9999)
        .ok_or_else(|| Problem::invalid_field("days", "the range must end by 9999-12-31"))?;
    let top = match q.top {
        None => 0,
        Some(n @ 1..=50) => n as i32,
        Some(_) => return Err(Problem::invalid_field("top", "must be between 1 and 50")),
    };
    let time_zone = q.time_zone.unwrap_or_else(|| "UTC".to_owned());
    if time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(Problem::invalid_field(
            "timeZone",
            "must be an IANA time zone such as Europe/Berlin",
        ));
    }
    let range = DateRange {
        start_date: q.from.format("%Y-%m-%d").to_string(),
        end_date: to.format("%Y-%m-%d").to_string(),
        time_zone: time_zone.clone(),
    };
    let mut orders = state.clients.order.read.clone();
    let mut payments = state.clients.payment.read.clone();
    let order_request = caller.ctx().request(order::GetOrderAnalyticsRequest {
        range: Some(range.clone()),
        top_products: top,
    });
    let payment_request = caller.ctx().request(payment::GetRevenueAnalyticsRequest {
        range: Some(range.clone()),
    });
    let (order_figures, revenue) = tokio::join!(
        orders.get_order_analytics(order_request),
        payments.get_revenue_analytics(payment_request)
    );
    Ok(Json(AnalyticsSummary {
        from: range.start_date,
        to: range.end_date,
        time_zone,
        orders: OrderFigures::from_proto(order_figures?.into_inner()),
        revenue: RevenueFigures::from_proto(revenue?.into_inner()),
    }))
}
