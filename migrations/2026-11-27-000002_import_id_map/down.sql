DROP TABLE import_id_map;
