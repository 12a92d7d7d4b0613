//! Analytics of the employee portal: order figures (order-svc) and revenue (payment-svc) of a
//! range of days, composed into one answer.

use ordermesh_proto::{order, payment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Money;
use super::orders::{OrderStatus, rejection_code};

/// The figures of a range of days in a time zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsSummary {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    pub time_zone: String,
    pub orders: OrderFigures,
    pub revenue: RevenueFigures,
}

/// About the orders placed in the range.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderFigures {
    /// Orders placed.
    pub total: i64,
    /// How many of them are in each status now.
    pub by_status: Vec<StatusCount>,
    /// Placed per day, every day of the range.
    pub by_day: Vec<DayCount>,
    /// Best sellers by units, of the orders confirmed (confirmed, shipped or delivered now).
    pub top_products_by_units: Vec<ProductSales>,
    /// Best sellers by revenue.
    pub top_products_by_revenue: Vec<ProductSales>,
    pub time_to_confirm: ConfirmationTimes,
    /// Why orders were rejected.
    pub rejections: Vec<RejectionCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusCount {
    pub status: OrderStatus,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayCount {
    /// `YYYY-MM-DD` in the range's time zone.
    pub date: String,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductSales {
    pub product_id: String,
    pub sku: String,
    pub name: String,
    pub units: i64,
    pub revenue: Option<Money>,
}

/// From placement to confirmation, of the orders confirmed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmationTimes {
    pub count: i64,
    /// Absent without confirmed orders.
    pub mean_seconds: Option<f64>,
    /// 95th percentile (nearest rank); absent without confirmed orders.
    pub p95_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectionCount {
    /// `out_of_stock`, `payment_declined`, `payment_failed`, `product_unavailable`, or
    /// `unspecified`.
    pub code: String,
    pub count: i64,
}

/// Money captured and refunded in the range, by when it moved.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevenueFigures {
    /// Each day with money moved, per currency.
    pub by_day: Vec<DayRevenue>,
    /// The whole range, per currency.
    pub totals: Vec<Revenue>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DayRevenue {
    pub date: String,
    #[serde(flatten)]
    pub revenue: Revenue,
}

/// Amounts in minor units of one currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revenue {
    pub currency: String,
    pub captured: i64,
    pub refunded: i64,
    /// Captured minus refunded.
    pub net: i64,
}

fn seconds(d: Option<prost_types::Duration>) -> Option<f64> {
    d.map(|d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

fn sales(list: Vec<order::ProductSales>) -> Vec<ProductSales> {
    list.into_iter()
        .map(|s| ProductSales {
            product_id: s.product_id,
            sku: s.sku,
            name: s.name,
            units: s.units,
            revenue: Money::from_proto(s.revenue),
        })
        .collect()
}

impl OrderFigures {
    pub fn from_proto(o: order::GetOrderAnalyticsResponse) -> Self {
        let times = o.time_to_confirm.unwrap_or_default();
        Self {
            total: o.orders,
            by_status: o
                .orders_by_status
                .into_iter()
                .map(|s| StatusCount {
                    status: OrderStatus::from_proto(s.status),
                    count: s.count,
                })
                .collect(),
            by_day: o
                .orders_by_day
                .into_iter()
                .map(|d| DayCount {
                    date: d.date,
                    count: d.count,
                })
                .collect(),
            top_products_by_units: sales(o.top_products_by_units),
            top_products_by_revenue: sales(o.top_products_by_revenue),
            time_to_confirm: ConfirmationTimes {
                count: times.count,
                mean_seconds: seconds(times.mean),
                p95_seconds: seconds(times.p95),
            },
            rejections: o
                .rejections
                .into_iter()
                .map(|r| RejectionCount {
                    code: rejection_code(r.code).unwrap_or("unspecified").to_owned(),
                    count: r.count,
                })
                .collect(),
        }
    }
}

impl Revenue {
    fn from_proto(r: Option<payment::Revenue>) -> Self {
        let r = r.unwrap_or_default();
        Self {
            currency: r.currency_code,
            captured: r.captured_minor,
            refunded: r.refunded_minor,
            net: r.net_minor,
        }
    }
}

impl RevenueFigures {
    pub fn from_proto(r: payment::GetRevenueAnalyticsResponse) -> Self {
        Self {
            by_day: r
                .days
                .into_iter()
                .map(|d| DayRevenue {
                    date: d.date,
                    revenue: Revenue::from_proto(d.revenue),
                })
                .collect(),
            totals: r.totals.into_iter().map(|t| Revenue::from_proto(Some(t))).collect(),
        }
    }
}
