//! The tables' schema: the migrations a store applies (or prints), which are pending, and
//! dropping everything for tests.

use sqlx::migrate::{Migration as SqlxMigration, MigrationType, Migrator};
use zerolost_core::Error as CoreError;

use crate::driver::{self, Dialect, db_err};
use crate::exec::{execute_on_pool, fetch_all_on_pool};
use crate::params::Columns;
use crate::statements::Migration;
use crate::store::SqlStore;
use crate::{SqlError, Tables};

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

    /// The migrations for `tables` without a connection (what `zerolost migrate --print`
    /// shows); refused when the database cannot honour `tables`.
    ///
    /// ```
    /// use zerolost_sqlx::{SqliteStore, Tables};
    /// let ddl = SqliteStore::migrations_for(&Tables::default().with_prefix("billing_")?)?;
    /// assert!(ddl[0].sql.contains("\"billing_outbox\""));
    /// # Ok::<(), zerolost_sqlx::SqlError>(())
    /// ```
    pub fn migrations_for(tables: &Tables) -> Result<Vec<Migration>, SqlError> {
        DB::check_tables(tables)?;
        Ok(driver::statements::<DB>(tables).migrations(DB::MIGRATIONS))
    }

    /// The whole schema as one SQL script to apply with the database's own tools (`psql -1
    /// -f`, `mysql`, `sqlite3`): sqlx's history table, each migration, and its history row,
    /// so a later [`SqlStore::migrate`] (or the relay's start) finds them applied.
    ///
    /// ```
    /// let script = zerolost_sqlx::SqliteStore::script_for(&Default::default())?;
    /// assert!(script.contains("INSERT INTO zerolost_migrations"));
    /// # Ok::<(), zerolost_sqlx::SqlError>(())
    /// ```
    pub fn script_for(tables: &Tables) -> Result<String, SqlError> {
        let history = match tables.schema() {
            Some(schema) => format!("{schema}.{}", tables.migrations_name()),
            None => tables.migrations_name(),
        };
        let h = &DB::HISTORY;
        let mut script = format!(
            "-- zerolost schema for {}: apply in one transaction.\n\
             CREATE TABLE IF NOT EXISTS {history} (\n    version BIGINT PRIMARY KEY,\n    \
             description TEXT NOT NULL,\n    installed_on {},\n    success BOOLEAN NOT NULL,\n    \
             checksum {} NOT NULL,\n    execution_time BIGINT NOT NULL\n);\n",
            DB::SYNTAX.label,
            h.installed_on,
            h.binary
        );
        for m in Self::migrations_for(tables)? {
            let checksum = sqlx_migration(&m).checksum;
            let hex: String = checksum.iter().map(|b| format!("{b:02x}")).collect();
            script.push_str(&format!(
                "\n-- migration {}: {}\n{}\n\nINSERT INTO {history} (version, description, success, \
                 checksum, execution_time) VALUES ({}, '{}', TRUE, {}{hex}{}, -1);\n",
                m.version,
                m.description,
                m.sql.trim_end(),
                m.version,
                m.description.replace('\'', "''"),
                h.hex.0,
                h.hex.1
            ));
        }
        Ok(script)
    }

    /// Creates or upgrades the outbox and inbox tables (sqlx migrations, recorded in
    /// `{prefix}migrations`). Safe to run from many processes at once.
    pub async fn migrate(&self) -> Result<(), CoreError> {
        let migrations = self.migrations().iter().map(sqlx_migration).collect();
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

/// `migration` as sqlx runs it (and checksums it).
fn sqlx_migration(migration: &Migration) -> SqlxMigration {
    SqlxMigration::new(
        migration.version,
        migration.description.into(),
        MigrationType::Simple,
        sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(migration.sql.clone())),
        false,
    )
}
