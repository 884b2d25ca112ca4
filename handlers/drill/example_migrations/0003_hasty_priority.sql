ALTER TABLE "orders" ADD COLUMN "priority" varchar(20) DEFAULT 'normal' NOT NULL;--> statement-breakpoint
ALTER TABLE "users" ADD COLUMN "legacy_flags" jsonb;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "orders_priority_idx" ON "orders" USING btree ("priority");
