// Runs once, when MongoDB starts on an empty data volume
// (/docker-entrypoint-initdb.d). The server connects as this user, which may
// only read and write the chat database (readWrite includes createIndex,
// which the message store runs at start-up), not as the root user.
const database = process.env.MONGO_INITDB_DATABASE;
db.getSiblingDB(database).createUser({
  user: process.env.MONGO_APP_USER,
  pwd: process.env.MONGO_APP_PASSWORD,
  roles: [{ role: "readWrite", db: database }],
});
