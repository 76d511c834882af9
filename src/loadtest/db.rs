//! Every SQL statement of the loadtest domain (the `load_tests` table).
