DROP TABLE import_deferred_objects;
