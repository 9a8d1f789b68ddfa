//! The tables' schema: the migrations a store applies (or prints), which are pending, and
//! dropping everything for tests.

use sqlx::migrate::{Migration as SqlxMigration, MigrationType, Migrator};
use zerolost_core::Error as CoreError;

use crate::SqlError;
use crate::driver::{Dialect, db_err};
use crate::exec::{execute_on_pool, fetch_all_on_pool};
use crate::params::Columns;
use crate::statements::Migration;
use crate::store::SqlStore;

impl<DB: Dialect> SqlStore<DB> {
    /// The migrations for this store's tables, oldest first, with its table names filled
    /// in: what [`SqlStore::migrate`] applies and `zerolost migrate --print` shows.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), zerolost_core::Error> {
    /// let store = zerolost_sqlx::SqliteStore::connect("sqlite://app.db", Default::default()).await?;
    /// for migration in store.migrations() {
    ///     println!("-- {} {}\n{}", migration.version, migration.description, migration.sql);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn migrations(&self) -> Vec<Migration> {
        self.sql.migrations(DB::MIGRATIONS)
    }

    /// Creates or upgrades the outbox and inbox tables (sqlx migrations, recorded in
    /// `{prefix}migrations`). Safe to run from many processes at once.
    pub async fn migrate(&self) -> Result<(), CoreError> {
        let migrations = self
            .migrations()
            .into_iter()
            .map(|m| {
                SqlxMigration::new(
                    m.version,
                    m.description.into(),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(m.sql)),
                    false,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        let tables = &self.sql.tables;
        let history = match tables.schema() {
            Some(schema) => format!("{schema}.{}", tables.migrations_name()),
            None => tables.migrations_name(),
        };
        migrator.dangerous_set_table_name(history);
        if let Some(schema) = tables.schema() {
            migrator.create_schema(schema.to_owned());
        }
        let mut conn = self.pool.acquire().await.map_err(db_err::<DB>("migrate"))?;
        migrator
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|e| CoreError::from(SqlError::Migrate(e)))
    }

    /// The migration versions not yet applied to this database (empty when the tables
    /// are current): what `zerolost doctor` reports. A missing history table means none
    /// is applied.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>, CoreError> {
        let tables = &self.sql.tables;
        let history = tables.qualified(&tables.migrations_name(), DB::SYNTAX.quote);
        fetch_all_on_pool(&self.pool, "SELECT 1", &[])
            .await
            .map_err(db_err::<DB>("reachability check"))?;
        let sql = format!("SELECT version FROM {history} WHERE success");
        let applied: Vec<i64> = match fetch_all_on_pool(&self.pool, &sql, &[]).await {
            Ok(rows) => rows
                .iter()
                .filter_map(|row| row.int("version").ok())
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(self
            .migrations()
            .into_iter()
            .map(|m| m.version)
            .filter(|version| !applied.contains(version))
            .collect())
    }

    /// Drops zerolost's tables (outbox, inbox, parked dead letters, migration history,
    /// PostgreSQL's lease function) and everything in them: for tests and benchmarks,
    /// never for a store in use.
    pub async fn drop_tables(&self) -> Result<(), CoreError> {
        let statements = DB::drop_first(&self.sql)
            .into_iter()
            .chain(self.sql.drop_tables());
        for sql in statements {
            execute_on_pool(&self.pool, &sql, &[])
                .await
                .map_err(db_err::<DB>("drop tables"))?;
        }
        Ok(())
    }
}
