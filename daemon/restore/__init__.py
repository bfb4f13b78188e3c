"""Restoring backups: a whole cluster, one database or one table, checked against the manifest.

Modules:
``restorer``      the entry point: ``Restorer`` takes the options, one method per restore kind
``full``          a whole cluster from pg_dumpall (each database staged, all swapped in at the end), or only its roles and tablespaces
``database``      one database through a staging database, swapped in once verified
``table``         one table's rows replaced in place, or the table copied into another database
``verification``  tables and row counts of a restored database against the manifest
``base``          what every kind shares: errors, report, system databases, quoting, guards
``target``        SQL on the server restored into: psql, creating and dropping databases
``artifacts``     the artifact: checksum, plain stream, archive placed next to the server, its contents
``selection``     which backup a restore uses
``fetch``         downloading a backup that is only in S3
``streams``       reading and editing plain dumps (gunzip, roles, one database's section)
``feed``          streaming an artifact into psql or pg_restore next to the server
``toc``           an archive's table of contents (pg_restore --list)
``confirm``       naming and confirming destructive steps
``left_out``      what the backup left out on purpose (EXCLUDE_*, BACKUP_SCHEMAS), as notes and refusals
``rows``          copying lost rows back from a restored copy
"""
