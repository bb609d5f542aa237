-- Feature snapshots: one row per customer and as-of date (the default feature spec's columns).
CREATE TABLE IF NOT EXISTS {{catalog}}.{{schema}}.yws_features (
  customer_id STRING NOT NULL COMMENT 'Entity key',
  as_of_date DATE NOT NULL COMMENT 'Snapshot date',
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
  channel STRING COMMENT 'Acquisition channel',
  defaulted_90d INT COMMENT 'Label: 1 if the account went into arrears within 90 days; null while unknown'
)
USING DELTA
COMMENT 'YWS feature snapshots, the input of training and scoring'
TBLPROPERTIES ('yws.owner' = '{{jobs_principal}}', 'yws.layer' = 'features');
