-- The MovieLens catalogue: one release per database file.

-- Metadata of the release this catalogue was built from (exactly one row).
CREATE TABLE dataset (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    version     TEXT    NOT NULL,  -- e.g. "ml-latest-small"
    source_md5  TEXT    NOT NULL,  -- md5 of the zip, or of the files of a folder source
    movies      INTEGER NOT NULL,
    ratings     INTEGER NOT NULL,
    tags        INTEGER NOT NULL,
    links       INTEGER NOT NULL,
    users       INTEGER NOT NULL,
    created_at  TEXT    NOT NULL   -- RFC 3339, UTC
);

-- One row per MovieLens movie id.
CREATE TABLE movies (
    movie_id      INTEGER PRIMARY KEY,   -- the MovieLens id
    title         TEXT    NOT NULL,      -- as published, e.g. "Matrix, The (1999)"
    year          INTEGER,               -- from the trailing "(YYYY)", when there is one
    rating_count  INTEGER NOT NULL DEFAULT 0  -- popularity, filled after the ratings load
);

CREATE TABLE genres (
    genre_id  INTEGER PRIMARY KEY,
    name      TEXT NOT NULL UNIQUE
);

CREATE TABLE movie_genres (
    movie_id  INTEGER NOT NULL REFERENCES movies (movie_id),
    genre_id  INTEGER NOT NULL REFERENCES genres (genre_id),
    PRIMARY KEY (movie_id, genre_id)
) WITHOUT ROWID;

CREATE TABLE links (
    movie_id  INTEGER PRIMARY KEY REFERENCES movies (movie_id),
    imdb_id   TEXT,     -- digits as published (leading zeros kept), e.g. "0114709"
    tmdb_id   INTEGER
);

-- Clustered by (user, time, movie): one user's history reads in time order, ties broken by movie
-- id. The primary key is the index that reads one user's ratings in time order.
CREATE TABLE ratings (
    user_id    INTEGER NOT NULL,
    timestamp  INTEGER NOT NULL,
    movie_id   INTEGER NOT NULL REFERENCES movies (movie_id),
    rating     REAL    NOT NULL,
    PRIMARY KEY (user_id, timestamp, movie_id)
) WITHOUT ROWID;

CREATE TABLE tags (
    user_id    INTEGER NOT NULL,
    movie_id   INTEGER NOT NULL REFERENCES movies (movie_id),
    tag        TEXT    NOT NULL,
    timestamp  INTEGER NOT NULL
);
CREATE INDEX tags_movie ON tags (movie_id);

-- Title search. External content over `movies`; rebuilt after each bulk load. Prefix indexes
-- of 2 and 3 characters keep short last-word prefixes ("te*", "ter*") fast.
CREATE VIRTUAL TABLE movies_fts USING fts5 (
    title,
    content = 'movies',
    content_rowid = 'movie_id',
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
