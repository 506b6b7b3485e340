//! A tiny HTTP server on 127.0.0.1:0 that serves fixed bodies by path and counts requests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A running server; it lives as long as the test process.
#[derive(Clone)]
pub struct FileServer {
    pub base_url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = Self {
            base_url,
            files: Arc::default(),
            hits: Arc::default(),
        };
        let shared = server.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = shared.clone();
                std::thread::spawn(move || s.answer(stream));
            }
        });
        server
    }

    /// Serves `body` at `path` (e.g. `/ml-latest-small.zip`); `None` makes it a 404.
    pub fn put(&self, path: &str, body: Option<Vec<u8>>) {
        let mut files = self.files.lock().unwrap();
        match body {
            Some(b) => files.insert(path.to_owned(), b),
            None => files.remove(path),
        };
    }

    /// Paths requested so far.
    pub fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }

    fn answer(&self, mut stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request = String::new();
        if reader.read_line(&mut request).is_err() {
            return;
        }
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => break,
                Ok(_) if header == "\r\n" || header == "\n" => break,
                Ok(_) => {}
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
        self.hits.lock().unwrap().push(path.clone());
        let body = self.files.lock().unwrap().get(&path).cloned();
        let (status, body) = match body {
            Some(b) => ("200 OK", b),
            None => ("404 Not Found", b"not found".to_vec()),
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        let _ = stream.flush();
    }
}
