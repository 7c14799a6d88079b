//! The seed's e-commerce flow as a diamond:
//! `fetch_order → validate_items → {process_payment, update_inventory} → send_confirmation`.
//!
//! `process_payment` fails its first attempt with a retryable error (a payment gateway that is
//! briefly unavailable) and succeeds on the retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::json;
use tasker::prelude::*;

/// Namespace of the workflow.
pub const NAMESPACE: &str = "ecommerce";
/// Name of the workflow.
pub const NAME: &str = "order_process";
/// Version of the workflow.
pub const VERSION: &str = "1.0.0";

/// The workflow's template, as the seed's YAML would declare it.
pub fn template() -> TaskTemplate {
    TaskTemplate::new(NAMESPACE, NAME, VERSION)
        .schema(json!({
            "type": "object",
            "required": ["order_id"],
            "properties": { "order_id": { "type": "integer", "minimum": 1 } }
        }))
        .step(StepTemplate::new("fetch_order", "ecommerce.fetch_order"))
        .step(
            StepTemplate::new("validate_items", "ecommerce.validate_items")
                .depends_on(["fetch_order"]),
        )
        .step(
            StepTemplate::new("process_payment", "ecommerce.process_payment")
                .depends_on(["validate_items"])
                .retry_limit(3),
        )
        .step(
            StepTemplate::new("update_inventory", "ecommerce.update_inventory")
                .depends_on(["validate_items"]),
        )
        .step(
            StepTemplate::new("send_confirmation", "ecommerce.send_confirmation")
                .depends_on(["process_payment", "update_inventory"]),
        )
}

/// Registers the template and its step handlers on a builder.
pub fn register(builder: tasker::TaskerBuilder) -> tasker::TaskerBuilder {
    builder
        .template(template())
        .handler("ecommerce.fetch_order", FetchOrder)
        .handler("ecommerce.validate_items", ValidateItems)
        .handler("ecommerce.process_payment", ProcessPayment::default())
        .handler("ecommerce.update_inventory", UpdateInventory)
        .handler("ecommerce.send_confirmation", SendConfirmation)
}

/// Loads the order named in the context.
#[derive(Debug)]
pub struct FetchOrder;

impl StepHandler for FetchOrder {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let order_id = cx.context()["order_id"]
            .as_i64()
            .ok_or_else(|| StepError::permanent("order_id missing"))?;
        Ok(json!({
            "order_id": order_id,
            "items": [{ "sku": "book-42", "quantity": 2, "price_cents": 1500 }],
        }))
    }
}

/// Checks that the order's items are in stock and totals them.
#[derive(Debug)]
pub struct ValidateItems;

impl StepHandler for ValidateItems {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let order = cx
            .parent("fetch_order")
            .ok_or_else(|| StepError::permanent("no order"))?;
        let items = order["items"].as_array().cloned().unwrap_or_default();
        let total: i64 = items
            .iter()
            .map(|i| i["quantity"].as_i64().unwrap_or(0) * i["price_cents"].as_i64().unwrap_or(0))
            .sum();
        Ok(json!({ "valid": true, "total_cents": total, "items": items }))
    }
}

/// Charges the order; the gateway is unavailable on the first attempt.
#[derive(Debug, Default)]
pub struct ProcessPayment {
    calls: Arc<AtomicU32>,
}

impl StepHandler for ProcessPayment {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StepError::retryable("payment gateway unavailable (503)"));
        }
        let total = cx
            .parent("validate_items")
            .and_then(|v| v["total_cents"].as_i64())
            .unwrap_or(0);
        Ok(json!({ "charged_cents": total, "payment_id": format!("pay_{}", cx.task_id()) }))
    }
}

/// Reserves the order's items.
#[derive(Debug)]
pub struct UpdateInventory;

impl StepHandler for UpdateInventory {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let items = cx
            .parent("validate_items")
            .map(|v| v["items"].clone())
            .unwrap_or_default();
        Ok(json!({ "reserved": items }))
    }
}

/// Emails the customer once payment and inventory are done.
#[derive(Debug)]
pub struct SendConfirmation;

impl StepHandler for SendConfirmation {
    async fn handle(&self, cx: &StepContext) -> StepResult {
        let payment = cx
            .parent("process_payment")
            .ok_or_else(|| StepError::permanent("no payment"))?;
        Ok(json!({ "email_sent": true, "payment_id": payment["payment_id"] }))
    }
}
