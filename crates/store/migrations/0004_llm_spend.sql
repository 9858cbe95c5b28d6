-- What the LLM cost per UTC day, in US dollars, for llm.daily_budget_usd: every replica books each
-- request's worst case here before it is sent and corrects it to the real cost after, so the budget
-- holds across replicas and restarts. One row per day.
CREATE TABLE llm_spend (
    day BIGINT PRIMARY KEY,
    usd DOUBLE PRECISION NOT NULL
);
