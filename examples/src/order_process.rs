//! The seed's e-commerce flow as a diamond:
//! `fetch_order → validate_items → {process_payment, update_inventory} → send_confirmation`.
//!
//! Each step is a method; its parameters after the context are its parents' outputs, as
//! their Rust types. `process_payment` fails its first attempt with a retryable error (a
//! payment gateway that is briefly unavailable) and succeeds on the retry.

use std::sync::atomic::{AtomicU32, Ordering};

use tasker::prelude::*;

/// What an order-processing task runs over.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct OrderContext {
    /// The order to process.
    #[schemars(range(min = 1))]
    pub order_id: i64,
}

/// An order as loaded from the shop.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct Order {
    /// Its id.
    pub order_id: i64,
    /// What was ordered.
    pub items: Vec<LineItem>,
}

/// One line of an order.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct LineItem {
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Unit price in cents.
    pub price_cents: i64,
}

/// The order's items, checked and totalled.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct ValidItems {
    /// Total in cents.
    pub total_cents: i64,
    /// The items.
    pub items: Vec<LineItem>,
}

/// A successful charge.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct Payment {
    /// The gateway's id for it.
    pub payment_id: String,
    /// Amount charged, in cents.
    pub charged_cents: i64,
}

/// Stock set aside for the order.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Reserved SKUs.
    pub skus: Vec<String>,
}

/// What the customer was told.
#[tasker::data]
#[derive(Debug, Clone)]
pub struct Confirmation {
    /// Whether the email went out.
    pub email_sent: bool,
    /// The payment it confirms.
    pub payment_id: String,
}

/// The order-processing workflow. It holds only a counter, so it is `Default` and registers
/// itself; a handler holding a pool or client would be handed to the builder instead.
#[derive(Debug, Default)]
pub struct OrderProcess {
    gateway_calls: AtomicU32,
}

/// Processes an order: load it, check it, charge it and reserve its stock, then confirm.
#[task_handler(name = "order_process", namespace = "ecommerce", version = "1.0.0", context = OrderContext)]
impl OrderProcess {
    /// Loads the order named in the context.
    #[step]
    pub async fn fetch_order(&self, cx: &StepContext<OrderContext>) -> Result<Order, StepError> {
        Ok(Order {
            order_id: cx.context().order_id,
            items: vec![LineItem {
                sku: "book-42".to_owned(),
                quantity: 2,
                price_cents: 1500,
            }],
        })
    }

    /// Checks that the items are in stock and totals them.
    #[step(depends_on = fetch_order)]
    pub async fn validate_items(
        &self,
        _cx: &StepContext<OrderContext>,
        order: Order,
    ) -> Result<ValidItems, StepError> {
        if order.items.is_empty() {
            return Err(StepError::permanent("the order has no items"));
        }
        let total_cents = order
            .items
            .iter()
            .map(|i| i64::from(i.quantity) * i.price_cents)
            .sum();
        Ok(ValidItems {
            total_cents,
            items: order.items,
        })
    }

    /// Charges the order; the gateway is unavailable on the first attempt.
    #[step(depends_on = validate_items, retry_limit = 3, timeout = "30s")]
    pub async fn process_payment(
        &self,
        cx: &StepContext<OrderContext>,
        items: ValidItems,
    ) -> Result<Payment, StepError> {
        if self.gateway_calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StepError::retryable("payment gateway unavailable (503)"));
        }
        Ok(Payment {
            payment_id: format!("pay_{}", cx.idempotency_key()),
            charged_cents: items.total_cents,
        })
    }

    /// Sets the items aside.
    #[step(depends_on = validate_items)]
    pub async fn update_inventory(
        &self,
        _cx: &StepContext<OrderContext>,
        items: ValidItems,
    ) -> Result<Reservation, StepError> {
        Ok(Reservation {
            skus: items.items.into_iter().map(|i| i.sku).collect(),
        })
    }

    /// Emails the customer once payment and inventory are done.
    #[step(depends_on = [process_payment, update_inventory])]
    pub async fn send_confirmation(
        &self,
        cx: &StepContext<OrderContext>,
        payment: Payment,
        _reservation: Reservation,
    ) -> Result<Confirmation, StepError> {
        // Any earlier step's output is at hand, typed, not only the parents'.
        let order = cx.output(Self::FETCH_ORDER).await?;
        debug_assert_eq!(order.order_id, cx.context().order_id);
        Ok(Confirmation {
            email_sent: true,
            payment_id: payment.payment_id,
        })
    }
}
