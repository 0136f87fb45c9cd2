-- Costs: daily budgets, the ledger (reservations that become charges), and budget alerts.
-- Money is numeric(20, 12): exact US dollars to the pico-dollar, summed exactly (see src/costs/money.py).

-- A daily limit per service, and 'all' for every service together. No row: no limit.
CREATE TABLE cost_budgets (
    service          text PRIMARY KEY CHECK (service IN ('all', 'llamaparse', 'openai')),
    daily_limit_usd  numeric(20, 12) NOT NULL CHECK (daily_limit_usd >= 0),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per thing paid for (key: "<document>:parse", "<document>:embed:<first>-<last>"), real or shadow.
-- amount_usd is what the row counts: the estimate while reserved, the charge once charged, 0 otherwise.
CREATE TABLE cost_entries (
    id             bigserial PRIMARY KEY,
    key            text NOT NULL,
    service        text NOT NULL CHECK (service IN ('llamaparse', 'openai')),
    stage          text NOT NULL,
    simulated      boolean NOT NULL,
    state          text NOT NULL CHECK (state IN ('reserved', 'charged', 'released', 'expired')),
    budget_day     date NOT NULL,
    estimate_usd   numeric(20, 12) NOT NULL CHECK (estimate_usd >= 0),
    amount_usd     numeric(20, 12) NOT NULL CHECK (amount_usd >= 0),
    estimate       jsonb NOT NULL DEFAULT '{}',  -- the usage the estimate assumed: pages, credits, tokens
    usage          jsonb,                        -- the usage the service reported, once charged
    price_version  text NOT NULL,
    -- money spent stays in the ledger when its document is deleted
    document_id    uuid REFERENCES documents ON DELETE SET NULL,
    job_id         uuid REFERENCES jobs ON DELETE SET NULL,
    reserved_at    timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    settled_at     timestamptz,
    UNIQUE (key, simulated)
);
CREATE INDEX cost_entries_day ON cost_entries (budget_day, service, simulated);
CREATE INDEX cost_entries_document ON cost_entries (document_id);
CREATE INDEX cost_entries_job ON cost_entries (job_id);
CREATE INDEX cost_entries_reserved ON cost_entries (expires_at) WHERE state = 'reserved';

-- One row per (day, service, threshold) ever crossed: the primary key makes "once per day" hold across
-- every process.
CREATE TABLE cost_alerts (
    budget_day  date NOT NULL,
    service     text NOT NULL CHECK (service IN ('all', 'llamaparse', 'openai')),
    threshold   integer NOT NULL CHECK (threshold IN (50, 80, 100)),
    spent_usd   numeric(20, 12) NOT NULL,
    limit_usd   numeric(20, 12) NOT NULL,
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (budget_day, service, threshold)
);
