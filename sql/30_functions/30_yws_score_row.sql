-- Score rows on demand, without a job: the @champion model behind the Model Serving
-- endpoint {{serving_endpoint}} (jobs/resources/yws_serving.yml; the bundle variable
-- serving_endpoint names it), called with ai_query. Pass the features of any rows you
-- select: SELECT yws_score_row(tenure_months, ...).probability ...
-- A row the batch job would quarantine (a null, NaN or infinite value, a category the model
-- never saw) gets its reason in error and NULL elsewhere, never a silent probability; rows
-- the batch job scores get its probability exactly. The result has the served model's
-- outputs (its signature). The function's owner needs CAN QUERY on the endpoint; callers
-- need EXECUTE on the function (90_grants.sql).
CREATE OR REPLACE FUNCTION {{catalog}}.{{schema}}.yws_score_row(
  tenure_months DOUBLE COMMENT 'Months since the account opened',
  monthly_spend DOUBLE COMMENT 'Average monthly spend over the last quarter',
  balance_utilization DOUBLE COMMENT 'Balance divided by credit limit, 0 to 1',
  days_past_due_avg DOUBLE COMMENT 'Average days past due over 12 months',
  late_payments_12m DOUBLE COMMENT 'Late payments in the last 12 months',
  credit_limit DOUBLE COMMENT 'Credit limit',
  support_calls_90d DOUBLE COMMENT 'Support calls in the last 90 days',
  has_autopay BOOLEAN COMMENT 'Pays by direct debit',
  is_business BOOLEAN COMMENT 'Business rather than personal account',
  region STRING COMMENT 'Sales region',
  product_tier STRING COMMENT 'Product tier: bronze, silver, gold or platinum',
  channel STRING COMMENT 'Acquisition channel'
)
RETURNS STRUCT<probability: DOUBLE, prediction: INT, band: STRING, error: STRING>
COMMENT 'YWS: score one row with the @champion model through Model Serving (ai_query); error says why, and the rest is NULL, for a row the batch job would quarantine'
RETURN ai_query(
  '{{serving_endpoint}}',
  named_struct(
    'tenure_months', tenure_months, 'monthly_spend', monthly_spend,
    'balance_utilization', balance_utilization, 'days_past_due_avg', days_past_due_avg,
    'late_payments_12m', late_payments_12m, 'credit_limit', credit_limit,
    'support_calls_90d', support_calls_90d, 'has_autopay', has_autopay,
    'is_business', is_business, 'region', region, 'product_tier', product_tier,
    'channel', channel));
