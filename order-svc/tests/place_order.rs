//! PlaceOrder's checks of the customer against a stand-in customer-svc that counts its calls:
//! one call per order, whoever places it, with the same answers as before. product-svc is
//! unreachable, so an order that passes the customer checks stops there with UNAVAILABLE.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ordermesh_platform::auth::Role;
use ordermesh_platform::testing::{self, RunningService, TestAuth, TestDatabase, violated_fields, with_token};
use ordermesh_proto::customer as cpb;
use ordermesh_proto::customer::customer_service_server::{CustomerService, CustomerServiceServer};
use ordermesh_proto::order as pb;
use ordermesh_proto::order::order_service_client::OrderServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use uuid::Uuid;

/// customer-svc stand-in: customers by id and by client subject, and a count of its calls.
#[derive(Default, Clone)]
struct Customers {
    by_id: Arc<Mutex<HashMap<Uuid, cpb::Customer>>>,
    by_subject: Arc<Mutex<HashMap<String, Uuid>>>,
    calls: Arc<AtomicUsize>,
}

impl Customers {
    fn add(&self, subject: Option<&str>, status: cpb::CustomerStatus) -> Uuid {
        let id = Uuid::now_v7();
        let customer = cpb::Customer {
            id: id.to_string(),
            status: status as i32,
            ..Default::default()
        };
        self.by_id.lock().unwrap().insert(id, customer);
        if let Some(subject) = subject {
            self.by_subject.lock().unwrap().insert(subject.to_owned(), id);
        }
        id
    }

    fn take_calls(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    fn get(&self, id: Option<Uuid>) -> Result<cpb::Customer, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        id.and_then(|id| self.by_id.lock().unwrap().get(&id).cloned())
            .ok_or_else(|| Status::not_found("no such customer"))
    }
}

fn no<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not part of the stand-in"))
}

#[tonic::async_trait]
impl CustomerService for Customers {
    async fn get_customer(
        &self,
        request: Request<cpb::GetCustomerRequest>,
    ) -> Result<Response<cpb::GetCustomerResponse>, Status> {
        let id = Uuid::parse_str(&request.into_inner().customer_id).ok();
        let customer = self.get(id)?;
        Ok(Response::new(cpb::GetCustomerResponse {
            customer: Some(customer),
        }))
    }
    async fn get_customer_by_identity(
        &self,
        request: Request<cpb::GetCustomerByIdentityRequest>,
    ) -> Result<Response<cpb::GetCustomerByIdentityResponse>, Status> {
        let subject = request.into_inner().subject;
        let id = self.by_subject.lock().unwrap().get(&subject).copied();
        let customer = self.get(id)?;
        Ok(Response::new(cpb::GetCustomerByIdentityResponse {
            customer: Some(customer),
        }))
    }
    async fn create_customer(
        &self,
        _: Request<cpb::CreateCustomerRequest>,
    ) -> Result<Response<cpb::CreateCustomerResponse>, Status> {
        no()
    }
    async fn update_customer(
        &self,
        _: Request<cpb::UpdateCustomerRequest>,
    ) -> Result<Response<cpb::UpdateCustomerResponse>, Status> {
        no()
    }
    async fn list_customers(
        &self,
        _: Request<cpb::ListCustomersRequest>,
    ) -> Result<Response<cpb::ListCustomersResponse>, Status> {
        no()
    }
    async fn get_preferences(
        &self,
        _: Request<cpb::GetPreferencesRequest>,
    ) -> Result<Response<cpb::GetPreferencesResponse>, Status> {
        no()
    }
    async fn update_preferences(
        &self,
        _: Request<cpb::UpdatePreferencesRequest>,
    ) -> Result<Response<cpb::UpdatePreferencesResponse>, Status> {
        no()
    }
    async fn record_consent(
        &self,
        _: Request<cpb::RecordConsentRequest>,
    ) -> Result<Response<cpb::RecordConsentResponse>, Status> {
        no()
    }
    async fn list_consents(
        &self,
        _: Request<cpb::ListConsentsRequest>,
    ) -> Result<Response<cpb::ListConsentsResponse>, Status> {
        no()
    }
    async fn export_customer_data(
        &self,
        _: Request<cpb::ExportCustomerDataRequest>,
    ) -> Result<Response<cpb::ExportCustomerDataResponse>, Status> {
        no()
    }
    async fn erase_customer(
        &self,
        _: Request<cpb::EraseCustomerRequest>,
    ) -> Result<Response<cpb::EraseCustomerResponse>, Status> {
        no()
    }
}

struct Harness {
    auth: TestAuth,
    customers: Customers,
    orders: OrderServiceClient<Channel>,
    _service: RunningService,
    _db: TestDatabase,
    stand_in: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stand_in.abort();
    }
}

impl Harness {
    async fn start() -> Self {
        let db = TestDatabase::sqlite().unwrap();
        let auth = TestAuth::start().await.unwrap();
        let customers = Customers::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let customers_url = format!("http://{}", listener.local_addr().unwrap());
        let fake = customers.clone();
        let stand_in = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(CustomerServiceServer::new(fake))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        let mut config = testing::service_config(order_svc::SERVICE, db.url(), auth.auth_config()).unwrap();
        config.peers.customer = customers_url;
        // Nothing listens there: product-svc is down.
        config.peers.product = "http://127.0.0.1:1".into();
        let service = RunningService::start(config, order_svc::run).await.unwrap();
        Self {
            auth,
            customers,
            orders: OrderServiceClient::new(service.channel()),
            _service: service,
            _db: db,
            stand_in,
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
