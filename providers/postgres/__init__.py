"""PostgreSQL provider: throwaway clusters, snapshots, restores, verification, triage, resets."""
