-- The W3C trace context of the work that created each notification (an event's handling or a
-- SendNotification call), so its live delivery joins that trace. No personal data.
ALTER TABLE notifications ADD COLUMN traceparent TEXT;
