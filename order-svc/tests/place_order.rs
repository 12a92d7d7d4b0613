//! PlaceOrder's checks of the customer against a stand-in customer-svc that counts its calls:
//! one call per order, whoever places it, with the same answers as before. product-svc is
//! unreachable, so an order that passes the customer checks stops there with UNAVAILABLE.

use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::{
    self, CustomerStandIn, RunningService, ServedStandIn, TestAuth, TestDatabase, violated_fields, with_token,
};
use ordermesh_proto::customer as cpb;
use ordermesh_proto::order as pb;
use ordermesh_proto::order::order_service_client::OrderServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Status};
use uuid::Uuid;

struct Harness {
    auth: TestAuth,
    customers: CustomerStandIn,
    orders: OrderServiceClient<Channel>,
    _service: RunningService,
    _db: TestDatabase,
    _stand_in: ServedStandIn,
}

impl Harness {
    async fn start() -> Self {
        let db = TestDatabase::sqlite().unwrap();
        let auth = TestAuth::start().await.unwrap();
        let customers = CustomerStandIn::default();
        let stand_in = customers.serve().await.unwrap();
        let mut config = testing::service_config(order_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        config.peers.customer = stand_in.url.clone();
        // Nothing listens there: product-svc is down.
        config.peers.product = "http://127.0.0.1:1".into();
        let service = RunningService::start(config, order_svc::run).await.unwrap();
        Self {
            auth,
            customers,
            orders: OrderServiceClient::new(service.channel()),
            _service: service,
            _db: db,
            _stand_in: stand_in,
        }
    }

    async fn place(&self, customer_id: Uuid, token: &str) -> Status {
        let request = pb::PlaceOrderRequest {
            customer_id: customer_id.to_string(),
            items: vec![pb::PlaceOrderItem {
                product_id: Uuid::now_v7().to_string(),
                quantity: 1,
            }],
            payment_method_token: "tok_approved".into(),
            ..Default::default()
        };
        self.orders
            .clone()
            .place_order(with_token(request, token))
            .await
            .expect_err("product-svc is down, so no order can be placed")
    }
}

#[tokio::test]
async fn a_client_order_asks_customer_svc_once() {
    let h = Harness::start().await;
    let own = h.customers.add(Some("alice"), cpb::CustomerStatus::Active);
    let other = h.customers.add(Some("bob"), cpb::CustomerStatus::Active);
    let carol = h.customers.add(Some("carol"), cpb::CustomerStatus::Suspended);

    let alice = h.auth.client("alice");
    assert_eq!(
        h.place(own, &alice).await.code(),
        Code::Unavailable,
        "passes to product-svc"
    );
    assert_eq!(h.customers.take_calls(), 1);

    assert_eq!(h.place(other, &alice).await.code(), Code::NotFound);
    assert_eq!(h.customers.take_calls(), 1);

    let error = h.place(carol, &h.auth.client("carol")).await;
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert_eq!(h.customers.take_calls(), 1);

    assert_eq!(h.place(own, &h.auth.client("nobody")).await.code(), Code::NotFound);
    assert_eq!(h.customers.take_calls(), 1);
}

#[tokio::test]
async fn an_employee_order_asks_customer_svc_once() {
    let h = Harness::start().await;
    let active = h.customers.add(None, cpb::CustomerStatus::Active);
    let suspended = h.customers.add(None, cpb::CustomerStatus::Suspended);
    let manager = h.auth.employee("m-1", &[Role::OrderManager]);

    assert_eq!(h.place(active, &manager).await.code(), Code::Unavailable);
    assert_eq!(h.customers.take_calls(), 1);

    assert_eq!(h.place(suspended, &manager).await.code(), Code::FailedPrecondition);
    assert_eq!(h.customers.take_calls(), 1);

    let error = h.place(Uuid::now_v7(), &manager).await;
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&error), ["customer_id"]);
    assert_eq!(h.customers.take_calls(), 1);
}
