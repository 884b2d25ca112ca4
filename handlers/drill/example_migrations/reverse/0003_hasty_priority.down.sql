-- The shipped reverse of 0003_hasty_priority (written by hand when 0003 was reviewed).
-- rollbot drafts the same reverse automatically (drizzle.review_reverse); this file is the
-- reference the drill's tests compare the drafted one against.
DROP INDEX IF EXISTS "orders_priority_idx";--> statement-breakpoint
ALTER TABLE "users" DROP COLUMN IF EXISTS "legacy_flags";--> statement-breakpoint
ALTER TABLE "orders" DROP COLUMN IF EXISTS "priority";
