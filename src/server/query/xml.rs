//! The XML of Query responses: elements, text, and AWS's `member` lists.

/// A response document being written.
#[derive(Debug, Default)]
pub struct Xml {
    out: String,
}

/// Escapes text for an element's content or an attribute's value.
fn escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

impl Xml {
    pub fn new() -> Xml {
        Xml::default()
    }

    /// `<tag>text</tag>`.
    pub fn text(&mut self, tag: &str, text: &str) -> &mut Xml {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        escape(text, &mut self.out);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag>text</tag>`, left out when `text` is empty (AWS leaves out unset fields).
    pub fn optional(&mut self, tag: &str, text: &str) -> &mut Xml {
        if !text.is_empty() {
            self.text(tag, text);
        }
        self
    }

    pub fn display(&mut self, tag: &str, value: impl std::fmt::Display) -> &mut Xml {
        self.text(tag, &value.to_string())
    }

    /// A policy document, URL-encoded as AWS returns them (the SDKs decode it).
    pub fn document(&mut self, tag: &str, document: &str) -> &mut Xml {
        let encoded = percent_encoding::utf8_percent_encode(document, percent_encoding::NON_ALPHANUMERIC);
        self.text(tag, &encoded.to_string())
    }

    /// `<tag>...</tag>` with `content` written inside.
    pub fn element(&mut self, tag: &str, content: impl FnOnce(&mut Xml)) -> &mut Xml {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
        content(self);
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
        self
    }

    /// `<tag><member>...</member>...</tag>`, AWS's encoding of a list.
    pub fn members<T>(&mut self, tag: &str, items: &[T], mut member: impl FnMut(&mut Xml, &T)) -> &mut Xml {
        self.element(tag, |xml| {
            for item in items {
                xml.element("member", |xml| member(xml, item));
            }
        })
    }

    /// A list of plain strings.
    pub fn string_members(&mut self, tag: &str, items: &[String]) -> &mut Xml {
        self.members(tag, items, |xml, item| {
            escape(item, &mut xml.out);
        })
    }

    /// Writes `other`'s content here.
    pub fn append(&mut self, other: Xml) -> &mut Xml {
        self.out.push_str(&other.out);
        self
    }

    /// The document with `namespace` on its root element `root`, and the XML declaration.
    pub fn finish(self, root: &str, namespace: &str) -> String {
        let mut document = String::with_capacity(self.out.len() + 128);
        document.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        document.push_str(root);
        document.push_str(" xmlns=\"");
        escape(namespace, &mut document);
        document.push_str("\">");
        document.push_str(&self.out);
        document.push_str("</");
        document.push_str(root);
        document.push('>');
        document
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_writes_member_lists() {
        let mut xml = Xml::new();
        xml.text("Message", "a<b & \"c\"")
            .string_members("Names", &["x".into(), "y&z".into()])
            .optional("Empty", "");
        let document = xml.finish("R", "https://iam.amazonaws.com/doc/2010-05-08/");
        assert_eq!(
            document,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\">\
             <Message>a&lt;b &amp; &quot;c&quot;</Message><Names><member>x</member><member>y&amp;z</member>\
             </Names></R>"
        );
    }

    #[test]
    fn url_encodes_policy_documents() {
        let mut xml = Xml::new();
        xml.document("PolicyDocument", r#"{"A": "b/c"}"#);
        assert!(xml.out.contains("%7B%22A%22%3A%20%22b%2Fc%22%7D"), "{}", xml.out);
    }
}
